// The session table: TSIH allocation (max_sessions), connections joining a session (MC/S up to
// its MaxConnections), session reinstatement (a new login with the ISID, initiator and target
// of a live session, TSIH 0: the old session's connections are closed first, unless
// allow_duplicated_isid). Logins call it from their own Thread, under the network's lock.
#include <algorithm>

#include <fmt/format.h>

#include <strata/scsi/scsi.h>

#include "conn.h"
#include "net.h"

namespace strata::iscsi::internal {

LoginStatus NetworkImpl::join_session(Conn& c, const Isid& isid, uint16_t tsih,
                                      std::string_view initiator, std::string_view target,
                                      SessionParams* params) {
    std::lock_guard lk(mu_);
    auto it = sessions_.find(tsih);
    if (it == sessions_.end()) return login_status::session_does_not_exist;
    Session& s = *it->second;
    if (s.ended || s.isid != isid || s.initiator != initiator || s.target != target ||
        s.type != SessionType::normal)
        return login_status::session_does_not_exist;
    if (c.lookup_result().device != s.device) return login_status::cant_include_in_session;
    if (s.conns.size() >= std::max<uint32_t>(1, s.params.max_connections))
        return login_status::too_many_connections;
    *params = s.params;
    return login_status::success;
}

uint16_t NetworkImpl::new_session(Conn& c, const Isid& isid, std::string_view initiator,
                                  std::string_view target, SessionType type) {
    std::lock_guard lk(mu_);
    if (shutting_down_) return 0;
    const TargetOptions& o = c.options();
    // Reinstatement: the same I_T nexus logging in anew ends the old session first.
    if (type == SessionType::normal && !o.allow_duplicated_isid) {
        for (auto it = sessions_.begin(); it != sessions_.end();) {
            Session& s = *it->second;
            if (s.type == SessionType::normal && s.isid == isid && s.initiator == initiator &&
                s.target == target) {
                STRATA_NOTICELOG(log_iscsi, "session {} of {} reinstated", s.tsih, initiator);
                s.ended = true;
                for (Conn* old : s.conns) {
                    auto r = conns_.find(old);
                    if (r != conns_.end())
                        close_on_thread(old, *r->second.thread, "session reinstated");
                }
                it = sessions_.erase(it);
            } else {
                ++it;
            }
        }
    }
    if (sessions_.size() >= std::max<uint32_t>(1, o.max_sessions)) return 0;
    uint16_t tsih = 0;
    for (int i = 0; i < 65536 && tsih == 0; ++i) {
        const uint16_t t = next_tsih_++;
        if (next_tsih_ == 0) next_tsih_ = 1;
        if (t != 0 && !sessions_.count(t)) tsih = t;
    }
    if (tsih == 0) return 0;
    auto s = std::make_shared<Session>();
    s->tsih = tsih;
    s->isid = isid;
    s->initiator = std::string(initiator);
    s->target = std::string(target);
    s->type = type;
    s->initiator_port = fmt::format("{},i,0x{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}", initiator,
                                    isid[0], isid[1], isid[2], isid[3], isid[4], isid[5]);
    if (type == SessionType::normal) {
        const TargetLookup& l = c.lookup_result();
        s->device = l.device;
        s->thread = l.device ? &scsi::device_thread(*l.device) : nullptr;
        if (l.device) s->device_name = scsi::device_name(*l.device);
        s->queue_depth = uint32_t(std::max(1, l.queue_depth));
    } else {
        s->queue_depth = std::max<uint32_t>(1, o.max_queue_depth);
    }
    sessions_[tsih] = std::move(s);
    return tsih;
}

std::shared_ptr<Session> NetworkImpl::attach(Conn& c, uint16_t tsih) {
    std::lock_guard lk(mu_);
    auto it = sessions_.find(tsih);
    if (it == sessions_.end() || it->second->ended) return nullptr;
    auto s = it->second;
    const Negotiated& n = c.negotiated();
    if (s->conns.empty() && n.leading) {
        s->params = n.session;
        s->exp_cmd_sn = n.sn.exp_cmd_sn;
        s->outstanding = 0;
    }
    // A connection reinstated under the same CID replaces the old one (RFC 7143 §6.3.4).
    for (Conn* old : s->conns) {
        if (old->cid() != n.cid) continue;
        auto r = conns_.find(old);
        if (r != conns_.end()) close_on_thread(old, *r->second.thread, "connection reinstated");
    }
    s->conns.push_back(&c);
    return s;
}

bool NetworkImpl::detach(Conn& c, const std::shared_ptr<Session>& s) {
    std::lock_guard lk(mu_);
    auto& v = s->conns;
    const size_t before = v.size();
    v.erase(std::remove(v.begin(), v.end(), &c), v.end());
    if (!v.empty() || v.size() == before) return false;
    // ERL 0: the session ends with its last connection
    auto it = sessions_.find(s->tsih);
    if (it != sessions_.end() && it->second == s) sessions_.erase(it);
    return true;
}

void NetworkImpl::end_session(const std::shared_ptr<Session>& s, Conn* except) {
    std::lock_guard lk(mu_);
    s->ended = true;
    auto it = sessions_.find(s->tsih);
    if (it != sessions_.end() && it->second == s) sessions_.erase(it);
    for (Conn* c : s->conns) {
        if (c == except) continue;
        auto r = conns_.find(c);
        if (r != conns_.end()) close_on_thread(c, *r->second.thread, "session ended");
    }
}

bool NetworkImpl::close_session_conn(const std::shared_ptr<Session>& s, uint16_t cid) {
    std::lock_guard lk(mu_);
    for (Conn* c : s->conns) {
        auto r = conns_.find(c);
        if (r != conns_.end() && r->second.info.cid == cid) {
            close_on_thread(c, *r->second.thread, "logged out by another connection");
            return true;
        }
    }
    return false;
}

size_t NetworkImpl::session_count() {
    std::lock_guard lk(mu_);
    return sessions_.size();
}

}  // namespace strata::iscsi::internal
