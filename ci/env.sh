# Source me: makes the Python package, strata-tgt and strata-rpc usable from this shell.
#   source ci/env.sh            (dev build)
#   STRATA_PRESET=asan source ci/env.sh
_strata_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_strata_build="$_strata_root/build/${STRATA_PRESET:-dev}"
export STRATA_BUILD_DIR="$_strata_build"
export PYTHONPATH="$_strata_root/bindings/python:$_strata_build/bindings${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$_strata_build/core/apps:$_strata_root/bindings/python/bin:$PATH"
unset _strata_root _strata_build
