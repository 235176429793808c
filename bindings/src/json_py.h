// nlohmann::json <-> Python objects.
//
// JSON null/bool/int/uint/float/string/array/object map to None/bool/int/float/str/list/dict.
// A non-negative Python int becomes an unsigned JSON number, a negative one a signed number,
// as the JSON parser types them when it reads request text.
// From Python: bool before int; ints must fit int64 or uint64; floats must be finite; dict keys
// must be str; list and tuple become arrays; anything else is a TypeError naming its type.
#pragma once

#include <nlohmann/json.hpp>
#include <pybind11/pybind11.h>

namespace strata::py {

pybind11::object to_python(const nlohmann::json& value);
nlohmann::json from_python(pybind11::handle obj);

}  // namespace strata::py
