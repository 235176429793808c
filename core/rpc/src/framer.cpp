#include <strata/rpc/internal/framer.h>

namespace strata::rpc {

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
}  // namespace

StreamFramer::Kind StreamFramer::next(std::string& out) {
    if (depth_ == 0) {
        // Skip whitespace between values.
        while (start_ < buf_.size() && is_space(buf_[start_])) start_++;
        scan_ = start_;
        if (start_ == buf_.size()) {
            buf_.clear();
            start_ = scan_ = 0;
            return Kind::need_more;
        }
        char c = buf_[start_];
        if (c != '{' && c != '[') {
            out = buf_.substr(start_, 32);
            clear();
            return Kind::garbage;
        }
    }
    while (scan_ < buf_.size()) {
        char c = buf_[scan_++];
        if (in_string_) {
            if (escape_) {
                escape_ = false;
            } else if (c == '\\') {
                escape_ = true;
            } else if (c == '"') {
                in_string_ = false;
            }
            continue;
        }
        if (c == '"') {
            in_string_ = true;
        } else if (c == '{' || c == '[') {
            depth_++;
        } else if (c == '}' || c == ']') {
            if (--depth_ == 0) {
                out.assign(buf_, start_, scan_ - start_);
                start_ = scan_;
                if (start_ > 65536 && start_ * 2 > buf_.size()) {  // compact consumed bytes
                    buf_.erase(0, start_);
                    scan_ -= start_;
                    start_ = 0;
                }
                return Kind::value;
            }
        }
    }
    return Kind::need_more;
}

}  // namespace strata::rpc
