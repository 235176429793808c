// All NVMe spec headers: registers, queue entries, opcodes, command dwords, status codes,
// identify data, log pages and PRP rules. Include the narrower header where one suffices.
#pragma once

#include <strata/nvme/spec/bits.h>
#include <strata/nvme/spec/cdw.h>
#include <strata/nvme/spec/fabrics.h>
#include <strata/nvme/spec/commands.h>
#include <strata/nvme/spec/identify.h>
#include <strata/nvme/spec/log_pages.h>
#include <strata/nvme/spec/opcodes.h>
#include <strata/nvme/spec/prp.h>
#include <strata/nvme/spec/queue.h>
#include <strata/nvme/spec/registers.h>
#include <strata/nvme/spec/status.h>
#include <strata/nvme/spec/tcp.h>
