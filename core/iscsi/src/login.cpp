// The login state machine and full-feature text negotiation (see
// <strata/iscsi/internal/login.h>).
#include <algorithm>
#include <cstring>

#include <strata/base/assert.h>
#include <strata/iscsi/internal/login.h>

namespace strata::iscsi {

namespace {
using namespace login_status;
namespace lf = login_flags;

std::string num(uint64_t v) { return std::to_string(v); }

// Splits "a,b,c" (list values, §6.1).
template <class F>
void for_each_item(std::string_view v, F&& f) {
    while (true) {
        const size_t c = v.find(',');
        if (f(v.substr(0, c))) return;
        if (c == std::string_view::npos) return;
        v.remove_prefix(c + 1);
    }
}

bool is_answer_word(std::string_view v) {
    return v == "NotUnderstood" || v == "Irrelevant" || v == "Reject";
}

// The session's command window: the node's queue depth, else max_queue_depth.
uint32_t window(const TargetInfo& t, const TargetOptions& o) {
    return std::max<uint32_t>(1, t.queue_depth ? t.queue_depth : o.max_queue_depth);
}

// Our value for a negotiated session key.
uint32_t target_value(KeyId id, const TargetOptions& o, const SessionParams& sp) {
    switch (id) {
    case KeyId::max_connections: return std::max<uint32_t>(1, o.max_connections_per_session);
    case KeyId::initial_r2t: return o.initial_r2t;
    case KeyId::immediate_data: return o.immediate_data;
    case KeyId::max_burst_length: return std::clamp<uint32_t>(o.max_burst_length, 512, 0xffffff);
    case KeyId::first_burst_length:
        // FirstBurstLength must not exceed MaxBurstLength (§13.14): the KeyId order makes
        // MaxBurstLength's result known here.
        return std::clamp<uint32_t>(std::min(o.first_burst_length, sp.max_burst_length), 512,
                                    0xffffff);
    case KeyId::default_time2wait: return std::min<uint32_t>(o.default_time2wait, 3600);
    case KeyId::default_time2retain: return std::min<uint32_t>(o.default_time2retain, 3600);
    // SPDK offers 1 (one R2T outstanding per command); max_r2t_per_connection is the
    // connection layer's cap of outstanding R2Ts across its commands, not an offer.
    case KeyId::max_outstanding_r2t: return 1;
    case KeyId::data_pdu_in_order: return 1;
    case KeyId::data_sequence_in_order: return 1;
    case KeyId::error_recovery_level: return 0;  // only ERL 0 is implemented
    default: return 0;
    }
}

uint32_t* session_field(KeyId id, SessionParams& sp, bool** flag) {
    *flag = nullptr;
    switch (id) {
    case KeyId::max_connections: return &sp.max_connections;
    case KeyId::initial_r2t: *flag = &sp.initial_r2t; return nullptr;
    case KeyId::immediate_data: *flag = &sp.immediate_data; return nullptr;
    case KeyId::max_burst_length: return &sp.max_burst_length;
    case KeyId::first_burst_length: return &sp.first_burst_length;
    case KeyId::default_time2wait: return &sp.default_time2wait;
    case KeyId::default_time2retain: return &sp.default_time2retain;
    case KeyId::max_outstanding_r2t: return &sp.max_outstanding_r2t;
    case KeyId::data_pdu_in_order: *flag = &sp.data_pdu_in_order; return nullptr;
    case KeyId::data_sequence_in_order: *flag = &sp.data_sequence_in_order; return nullptr;
    case KeyId::error_recovery_level: return &sp.error_recovery_level;
    default: return nullptr;
    }
}

uint32_t result_of(KeyKind k, uint32_t a, uint32_t b) {
    switch (k) {
    case KeyKind::boolean_and: return a && b;
    case KeyKind::boolean_or: return a || b;
    case KeyKind::number_min: return std::min(a, b);
    case KeyKind::number_max: return std::max(a, b);
    default: return b;
    }
}

std::string_view find_value(const std::vector<KeyValue>& kvs, std::string_view key, bool* found) {
    for (const auto& kv : kvs)
        if (kv.key == key) return *found = true, kv.value;
    *found = false;
    return {};
}

void build_login_rsp(LoginRsp& r, const LoginReq& req) {
    r = LoginRsp{};
    r.opcode = uint8_t(Opcode::login_rsp);
    r.version_max = 0;
    r.version_active = 0;
    std::memcpy(r.isid, req.isid, 6);
    r.tsih = req.tsih;
    r.itt = req.itt;
}
}  // namespace

LoginConnection::LoginConnection(const LoginConfig& config) : cfg_(config) {
    STRATA_ASSERT(cfg_.options && cfg_.host && cfg_.rng);
    neg_.target_mrdsl = std::clamp<uint32_t>(cfg_.options->max_recv_data_segment_length, 512,
                                             kMaxDataSegmentLength);
}

LoginConnection::Outcome LoginConnection::fail(LoginStatus s, const char* why,
                                               std::vector<uint8_t>& out) {
    status_ = s;
    reason_ = why;
    LoginRsp r{};
    r.opcode = uint8_t(Opcode::login_rsp);
    std::memcpy(r.isid, neg_.isid.data(), 6);
    r.itt.set(itt_);
    r.stat_sn.set(neg_.sn.stat_sn++);
    r.exp_cmd_sn.set(cmd_sn_);
    r.max_cmd_sn.set(cmd_sn_);
    r.status_class = s.status_class;
    r.status_detail = s.status_detail;
    append_pdu(out, &r, {}, {});
    out_text_.clear();
    return Outcome::failed;
}

// The identity keys of the first complete text: InitiatorName, SessionType, TargetName.
bool LoginConnection::identity(const std::vector<KeyValue>& kvs) {
    bool have = false;
    const std::string_view iname = find_value(kvs, "InitiatorName", &have);
    if (!have) {
        status_ = missing_parameter, reason_ = "no InitiatorName";
        return false;
    }
    if (!valid_iscsi_name(iname)) {
        status_ = initiator_error, reason_ = "malformed InitiatorName";
        return false;
    }
    neg_.initiator_name = iname;
    const std::string_view stype = find_value(kvs, "SessionType", &have);
    if (!have || stype == "Normal")
        neg_.session_type = SessionType::normal;
    else if (stype == "Discovery")
        neg_.session_type = SessionType::discovery;
    else {
        status_ = session_type_not_supported, reason_ = "unknown SessionType";
        return false;
    }
    if (neg_.session_type == SessionType::normal) {
        const std::string_view tname = find_value(kvs, "TargetName", &have);
        if (!have) {
            status_ = missing_parameter, reason_ = "no TargetName in a normal session";
            return false;
        }
        const LoginStatus s = cfg_.host->find_target(tname, iname, &target_);
        if (!s.ok()) {
            status_ = s, reason_ = "target lookup refused the login";
            return false;
        }
        neg_.target_name = target_.name;
        policy_ = target_.auth;
    } else {
        policy_ = cfg_.host->discovery_auth();
    }
    if (neg_.tsih != 0) {
        if (neg_.session_type == SessionType::discovery) {
            status_ = session_does_not_exist, reason_ = "a discovery session takes no connections";
            return false;
        }
        const LoginStatus s = cfg_.host->join_session(neg_.isid, neg_.tsih, neg_.initiator_name,
                                                      neg_.target_name, &neg_.session);
        if (!s.ok()) {
            status_ = s, reason_ = "the session named by TSIH refused the connection";
            return false;
        }
        neg_.leading = false;
    }
    seen_.set(size_t(KeyId::initiator_name));
    seen_.set(size_t(KeyId::session_type));
    seen_.set(size_t(KeyId::target_name));
    identified_ = true;
    return true;
}

bool LoginConnection::finish_chap(const std::vector<KeyValue>& kvs, std::string& rsp) {
    bool have_n = false, have_r = false, have_i = false, have_c = false;
    const std::string_view n = find_value(kvs, "CHAP_N", &have_n);
    const std::string_view r = find_value(kvs, "CHAP_R", &have_r);
    const std::string_view ii = find_value(kvs, "CHAP_I", &have_i);
    const std::string_view ic = find_value(kvs, "CHAP_C", &have_c);
    auto auth_fail = [&](const char* why) {
        status_ = authentication_failure, reason_ = why;
        return false;
    };
    if (!have_n || !have_r) return auth_fail("CHAP_N or CHAP_R missing");
    ChapSecret secret;
    if (!cfg_.host->lookup(policy_.chap_group, n, &secret))
        return auth_fail("no CHAP secret for this user");
    const auto resp = decode_binary(r);
    const Md5Digest expect = chap_md5_response(chap_id_, secret.secret, challenge_);
    if (!resp || resp->size() != expect.size() ||
        !std::equal(expect.begin(), expect.end(), resp->begin()))
        return auth_fail("CHAP response does not match the secret");
    if (have_i != have_c) return auth_fail("mutual CHAP needs both CHAP_I and CHAP_C");
    if (have_i) {
        const auto id = decode_number(ii);
        const auto ch = decode_binary(ic);
        if (!id || *id > 255 || !ch || ch->empty() || ch->size() > 1024)
            return auth_fail("malformed mutual CHAP_I/CHAP_C");
        if (*ch == challenge_) return auth_fail("mutual CHAP challenge reflects ours");
        if (secret.muser.empty() || secret.msecret.empty())
            return auth_fail("mutual CHAP asked but no mutual secret configured");
        const Md5Digest m = chap_md5_response(uint8_t(*id), secret.msecret, *ch);
        append_key(rsp, "CHAP_N", secret.muser);
        append_key(rsp, "CHAP_R", encode_hex(m));
    } else if (policy_.mutual_chap) {
        return auth_fail("mutual CHAP required");
    }
    neg_.chap_user = n;
    auth_ = Auth::done;
    authenticated_ = true;
    return true;
}

bool LoginConnection::auth_key(const KeyDef& d, std::string_view value,
                               const std::vector<KeyValue>& kvs, std::string& rsp) {
    if (stage_ != Stage::security) {
        status_ = initiator_error, reason_ = "security key outside the security stage";
        return false;
    }
    switch (d.id) {
    case KeyId::auth_method: {
        if (auth_ != Auth::none_yet || authenticated_) {
            status_ = initiator_error, reason_ = "AuthMethod negotiated twice";
            return false;
        }
        std::string_view chosen;
        for_each_item(value, [&](std::string_view m) {
            const bool ok = (m == "CHAP" && !policy_.disable_chap) ||
                            (m == "None" && !policy_.require_chap && !policy_.mutual_chap);
            if (ok) chosen = m;
            return ok;
        });
        if (chosen.empty()) {
            append_key(rsp, "AuthMethod", "Reject");
            status_ = authentication_failure, reason_ = "no acceptable AuthMethod";
            return false;
        }
        append_key(rsp, "AuthMethod", chosen);
        if (chosen == "None")
            authenticated_ = true, auth_ = Auth::done;
        else
            auth_ = Auth::await_chap_a;
        return true;
    }
    case KeyId::chap_a: {
        if (auth_ != Auth::await_chap_a) {
            status_ = authentication_failure, reason_ = "CHAP_A out of sequence";
            return false;
        }
        bool md5 = false;
        for_each_item(value, [&](std::string_view a) { return md5 = a == "5"; });
        if (!md5) {
            append_key(rsp, "CHAP_A", "Reject");
            status_ = authentication_failure, reason_ = "CHAP_A offers no MD5 (5)";
            return false;
        }
        chap_id_ = uint8_t(cfg_.rng->next());
        const uint32_t len = std::clamp<uint32_t>(cfg_.options->chap_challenge_length, 16, 1024);
        challenge_.resize(len);
        for (auto& b : challenge_) b = uint8_t(cfg_.rng->next());
        append_key(rsp, "CHAP_A", "5");
        append_key(rsp, "CHAP_I", num(chap_id_));
        append_key(rsp, "CHAP_C", encode_hex(challenge_));
        auth_ = Auth::await_chap_r;
        return true;
    }
    case KeyId::chap_n:
    case KeyId::chap_r:
    case KeyId::chap_i:
    case KeyId::chap_c:
        // The first of them in this text verifies them all (finish_chap); the rest are done.
        if (chap_finished_now_) return true;
        if (auth_ != Auth::await_chap_r) {
            status_ = authentication_failure, reason_ = "CHAP response out of sequence";
            return false;
        }
        chap_finished_now_ = true;
        return finish_chap(kvs, rsp);
    default: return true;
    }
}

// One non-identity key from the initiator; appends our answer. False: the login fails.
bool LoginConnection::negotiate(const KeyDef& d, std::string_view value, std::string& rsp) {
    const size_t idx = size_t(d.id);
    const bool answer = offered_.test(idx);  // the initiator answers our offer
    if (seen_.test(idx) && !answer) {
        if (d.kind == KeyKind::declarative) return true;  // identity re-declared: checked below
        status_ = initiator_error, reason_ = "key negotiated twice";
        return false;
    }
    seen_.set(idx);
    offered_.reset(idx);
    if (!(d.flags & key_flags::from_initiator)) {
        append_key(rsp, d.name, "Reject");
        return true;
    }
    if (is_answer_word(value)) return true;  // NotUnderstood/Irrelevant/Reject: defaults stay
    if (value.size() > kMaxValueLength) {
        append_key(rsp, d.name, "Reject");
        return true;
    }
    const bool discovery = neg_.session_type == SessionType::discovery;
    if ((discovery && (d.flags & key_flags::not_discovery)) ||
        (!neg_.leading && (d.flags & key_flags::leading_only))) {
        append_key(rsp, d.name, "Irrelevant");
        return true;
    }
    switch (d.kind) {
    case KeyKind::list: {  // HeaderDigest, DataDigest
        std::string_view chosen;
        // A node requiring a digest accepts CRC32C only (SPDK's header_digest/data_digest).
        const bool required = d.id == KeyId::header_digest ? target_.header_digest
                                                             : target_.data_digest;
        for_each_item(value, [&](std::string_view v) {
            const bool ok = v == "CRC32C" || (v == "None" && !required);
            if (ok) chosen = v;
            return ok;
        });
        if (chosen.empty()) {
            append_key(rsp, d.name, "Reject");
            return true;
        }
        (d.id == KeyId::header_digest ? neg_.header_digest : neg_.data_digest) = chosen == "CRC32C";
        append_key(rsp, d.name, chosen);
        return true;
    }
    case KeyKind::boolean_and:
    case KeyKind::boolean_or:
    case KeyKind::number_min:
    case KeyKind::number_max: {
        uint32_t theirs;
        if (d.kind == KeyKind::boolean_and || d.kind == KeyKind::boolean_or) {
            bool b;
            if (!parse_bool(value, &b)) {
                append_key(rsp, d.name, "Reject");
                return true;
            }
            theirs = b;
        } else {
            const auto n = decode_number(value);
            if (!n || *n < d.min || *n > d.max) {
                append_key(rsp, d.name, "Reject");
                return true;
            }
            theirs = uint32_t(*n);
        }
        if (d.id == KeyId::first_burst_length && neg_.session.initial_r2t &&
            !neg_.session.immediate_data) {
            append_key(rsp, d.name, "Irrelevant");  // §13.14: no unsolicited data at all
            return true;
        }
        const uint32_t ours = target_value(d.id, *cfg_.options, neg_.session);
        const uint32_t result = result_of(d.kind, ours, theirs);
        bool* flag;
        uint32_t* field = session_field(d.id, neg_.session, &flag);
        if (flag) *flag = result != 0;
        if (field) *field = result;
        if (!answer) {
            const bool is_bool = d.kind == KeyKind::boolean_and || d.kind == KeyKind::boolean_or;
            append_key(rsp, d.name, is_bool ? (result ? "Yes" : "No") : num(result));
        }
        return true;
    }
    case KeyKind::declarative:
        switch (d.id) {
        case KeyId::max_recv_data_segment_length: {
            const auto n = decode_number(value);
            if (!n || *n < d.min || *n > d.max) {
                // One answer per key: the Reject stands in for our declaration, so the
                // initiator assumes the default 8192 for us, and so do we.
                append_key(rsp, d.name, "Reject");
                if (!mrdsl_sent_) neg_.target_mrdsl = 8192;
                mrdsl_sent_ = true;
                return true;
            }
            neg_.initiator_mrdsl = uint32_t(*n);
            return true;
        }
        case KeyId::initiator_alias: neg_.initiator_alias = value; return true;
        default: return true;  // identity keys: handled by identity()
        }
    case KeyKind::text_only: append_key(rsp, d.name, "Irrelevant"); return true;
    case KeyKind::obsolete:
        // RFC 7143 §13.26: answer the RFC 3720 marker keys so such initiators proceed.
        if (d.id == KeyId::of_marker || d.id == KeyId::if_marker)
            append_key(rsp, d.name, "No");
        else
            append_key(rsp, d.name, "Irrelevant");
        return true;
    case KeyKind::auth: return true;  // not reached: auth_key
    }
    return true;
}

// Before the Final-Response of a normal session: offer the session keys the initiator left
// unsaid where our value would change the RFC default's outcome (§6.2: the target may
// originate them; the initiator must answer before the login can complete).
void LoginConnection::add_offers(std::string& rsp) {
    if (neg_.session_type != SessionType::normal || !neg_.leading) return;
    for (const KeyDef& d : all_keys()) {
        const size_t idx = size_t(d.id);
        if (seen_.test(idx) || offered_.test(idx)) continue;
        if (d.kind != KeyKind::boolean_and && d.kind != KeyKind::boolean_or &&
            d.kind != KeyKind::number_min && d.kind != KeyKind::number_max)
            continue;
        if (d.id == KeyId::first_burst_length && neg_.session.initial_r2t &&
            !neg_.session.immediate_data)
            continue;
        const uint32_t ours = target_value(d.id, *cfg_.options, neg_.session);
        if (result_of(d.kind, ours, d.dflt) == d.dflt) continue;
        const bool is_bool = d.kind == KeyKind::boolean_and || d.kind == KeyKind::boolean_or;
        append_key(rsp, d.name, is_bool ? (ours ? "Yes" : "No") : num(ours));
        offered_.set(idx);
    }
}

void LoginConnection::send_response(const LoginReq& req, bool transit, uint8_t nsg,
                                    std::vector<uint8_t>& out) {
    LoginRsp r;
    build_login_rsp(r, req);
    const size_t left = out_text_.size() - out_off_;
    const size_t n = std::min<size_t>(left, kLoginMaxDataSegment);
    const bool more = n < left;
    const uint8_t csg = uint8_t(login_flags::csg(req.flags));
    r.flags = uint8_t(csg << 2);
    if (more) {
        r.flags |= login_flags::cont;
    } else if (transit) {
        r.flags |= uint8_t(login_flags::transit | nsg);
    }
    if (!more && transit && nsg == uint8_t(Stage::full_feature)) r.tsih.set(neg_.tsih);
    r.stat_sn.set(neg_.sn.stat_sn++);
    r.exp_cmd_sn.set(cmd_sn_);
    const bool final = !more && transit && nsg == uint8_t(Stage::full_feature);
    const uint32_t depth = window(target_, *cfg_.options);
    r.max_cmd_sn.set(final ? cmd_sn_ + depth - 1 : cmd_sn_);
    append_pdu(out, &r,
               std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(out_text_.data()) + out_off_, n),
               {});
    out_off_ += n;
    if (!more) {
        out_text_.clear();
        out_off_ = 0;
    }
}

LoginConnection::Outcome LoginConnection::on_pdu(const uint8_t* bhs, std::span<const uint8_t> data,
                                                 std::vector<uint8_t>& out) {
    if (status_.status_class != 0) return Outcome::failed;
    if (stage_ == Stage::full_feature) return Outcome::full_feature;
    const Bhs& b = *reinterpret_cast<const Bhs*>(bhs);
    if (b.op() != Opcode::login_req) {
        if (!started_) itt_ = b.itt.get();
        return fail(invalid_during_login, "a PDU other than Login Request during login", out);
    }
    const LoginReq req = bhs_as<LoginReq>(bhs);
    const bool transit = req.flags & lf::transit;
    const bool cont = req.flags & lf::cont;
    const uint8_t csg = lf::csg(req.flags), nsg = lf::nsg(req.flags);
    itt_ = req.itt.get();
    if (!started_) {
        started_ = true;
        std::memcpy(neg_.isid.data(), req.isid, 6);
        neg_.tsih = req.tsih.get();
        neg_.cid = req.cid.get();
        cmd_sn_ = req.cmd_sn.get();
        neg_.sn.stat_sn = req.exp_stat_sn.get();
        if (req.version_min > 0 || req.version_max < req.version_min)
            return fail(unsupported_version, "no common version (we speak 0x00)", out);
        if (csg != uint8_t(Stage::security) && csg != uint8_t(Stage::operational))
            return fail(initiator_error, "first login request in an invalid stage", out);
        stage_ = Stage(csg);
    } else {
        if (std::memcmp(neg_.isid.data(), req.isid, 6) != 0 || req.tsih.get() != neg_.tsih ||
            req.cid.get() != neg_.cid)
            return fail(initiator_error, "ISID, TSIH or CID changed during login", out);
    }
    if (transit && cont) return fail(initiator_error, "T and C both set", out);
    if (csg != uint8_t(stage_)) return fail(initiator_error, "CSG is not the current stage", out);
    if (transit && (nsg <= csg || nsg == 2))
        return fail(initiator_error, "invalid NSG for a transition", out);

    // Our long response still being collected: the initiator sends empty requests.
    if (!out_text_.empty()) {
        if (!data.empty() || cont)
            return fail(initiator_error, "text while the target's response continues", out);
        send_response(req, out_transit_, out_nsg_, out);
        if (out_text_.empty() && out_transit_) {
            stage_ = Stage(out_nsg_);
            if (stage_ == Stage::full_feature) {
                neg_.sn.exp_cmd_sn = cmd_sn_;
                neg_.sn.max_cmd_sn = cmd_sn_ + window(target_, *cfg_.options) - 1;
                return Outcome::full_feature;
            }
        }
        return Outcome::in_progress;
    }

    if (in_text_.size() + data.size() > kMaxLoginText)
        return fail(initiator_error, "login text too long", out);
    in_text_.append(reinterpret_cast<const char*>(data.data()), data.size());
    if (cont) {  // more text follows: acknowledge with an empty response
        LoginRsp r;
        build_login_rsp(r, req);
        r.flags = uint8_t(csg << 2);
        r.stat_sn.set(neg_.sn.stat_sn++);
        r.exp_cmd_sn.set(cmd_sn_);
        r.max_cmd_sn.set(cmd_sn_);
        append_pdu(out, &r, {}, {});
        return Outcome::in_progress;
    }
    std::string text = std::move(in_text_);
    in_text_.clear();
    std::vector<KeyValue> kvs;
    const TextError te = parse_text(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()), kvs);
    if (te != TextError::none) return fail(initiator_error, text_error_name(te), out);

    if (!identified_ && !identity(kvs)) return fail(status_, reason_, out);
    // Identity keys re-declared with another value are a protocol error (§6.2).
    for (const auto& kv : kvs) {
        if ((kv.key == "InitiatorName" && kv.value != neg_.initiator_name) ||
            (kv.key == "TargetName" && neg_.session_type == SessionType::normal &&
             kv.value != neg_.target_name) ||
            (kv.key == "SessionType" &&
             kv.value != (neg_.session_type == SessionType::normal ? "Normal" : "Discovery")))
            return fail(initiator_error, "identity key changed during login", out);
    }
    if (stage_ == Stage::operational && policy_.require_chap && !authenticated_)
        return fail(authentication_failure, "CHAP required but the security stage was skipped", out);

    // Process in KeyId order (MaxBurstLength before FirstBurstLength, AuthMethod before CHAP_A);
    // unknown keys last.
    chap_finished_now_ = false;
    std::vector<std::pair<const KeyDef*, const KeyValue*>> order;
    order.reserve(kvs.size());
    std::string rsp;
    for (const auto& kv : kvs) order.emplace_back(find_key(kv.key), &kv);
    std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
        const size_t ia = a.first ? size_t(a.first->id) : SIZE_MAX;
        const size_t ib = b.first ? size_t(b.first->id) : SIZE_MAX;
        return ia < ib;
    });
    for (const auto& [def, kv] : order) {
        if (!def) {
            if (kv->value.size() > kMaxValueLength) return fail(initiator_error, "value too long", out);
            append_key(rsp, kv->key, "NotUnderstood");
            continue;
        }
        const bool ok = def->kind == KeyKind::auth || (def->flags & key_flags::security)
                            ? auth_key(*def, kv->value, kvs, rsp)
                            : negotiate(*def, kv->value, rsp);
        if (!ok) return fail(status_, reason_, out);
    }

    // Declarations: TargetPortalGroupTag (and alias) in the first response of a normal
    // session; our MaxRecvDataSegmentLength once operational parameters are being exchanged.
    if (!tpgt_sent_ && neg_.session_type == SessionType::normal) {
        if (!target_.alias.empty() && !seen_.test(size_t(KeyId::target_alias)))
            append_key(rsp, "TargetAlias", target_.alias);
        append_key(rsp, "TargetPortalGroupTag", num(cfg_.portal_group_tag));
        tpgt_sent_ = true;
    }
    bool do_transit = transit;
    if (transit && stage_ == Stage::security && !authenticated_) {
        if (auth_ == Auth::await_chap_a || auth_ == Auth::await_chap_r)
            do_transit = false;  // the CHAP exchange continues first
        else if (policy_.require_chap || policy_.mutual_chap)
            return fail(authentication_failure, "transition before authentication", out);
        else
            authenticated_ = true;  // no AuthMethod offered and none required
    }
    if (!mrdsl_sent_ && (stage_ == Stage::operational || (do_transit && nsg == 3))) {
        append_key(rsp, "MaxRecvDataSegmentLength", num(neg_.target_mrdsl));
        mrdsl_sent_ = true;
    }
    if (transit && nsg == uint8_t(Stage::full_feature)) add_offers(rsp);
    if (offered_.any()) do_transit = false;  // wait for the answers
    if (do_transit && nsg == uint8_t(Stage::full_feature) &&
        ((target_.header_digest && !neg_.header_digest) ||
         (target_.data_digest && !neg_.data_digest)))
        return fail(initiator_error, "the target requires CRC32C digests", out);
    if (do_transit && nsg == uint8_t(Stage::full_feature) && neg_.leading) {
        neg_.tsih = cfg_.host->new_session(neg_.isid, neg_.initiator_name, neg_.target_name,
                                           neg_.session_type);
        if (neg_.tsih == 0) return fail(out_of_resources, "no session available", out);
    }
    out_text_ = std::move(rsp);
    out_off_ = 0;
    out_transit_ = do_transit;
    out_nsg_ = nsg;
    const bool whole = out_text_.size() <= kLoginMaxDataSegment;
    send_response(req, do_transit, nsg, out);
    if (whole && do_transit) {
        stage_ = Stage(nsg);
        if (stage_ == Stage::full_feature) {
            neg_.sn.exp_cmd_sn = cmd_sn_;
            neg_.sn.max_cmd_sn = cmd_sn_ + window(target_, *cfg_.options) - 1;
            return Outcome::full_feature;
        }
    }
    return Outcome::in_progress;
}

// ---- full feature phase: Text Request ------------------------------------------------------

void TextNegotiator::respond(const TextReq& req, std::vector<uint8_t>& out, PduDigests dg,
                             bool ack_only) {
    TextRsp r{};
    r.opcode = uint8_t(Opcode::text_rsp);
    r.lun = req.lun;
    r.itt = req.itt;
    const size_t left = out_text_.size() - out_off_;
    const size_t n = std::min<size_t>(left, std::max<uint32_t>(512, neg_->initiator_mrdsl));
    const bool more = n < left;
    if (ack_only) {
        r.flags = 0;
        ttt_ = next_ttt_++;
        if (next_ttt_ == kReservedTag) next_ttt_ = 1;
        r.ttt.set(ttt_);
    } else if (more) {
        r.flags = text_flags::cont;
        ttt_ = next_ttt_++;
        if (next_ttt_ == kReservedTag) next_ttt_ = 1;
        r.ttt.set(ttt_);
    } else {
        r.flags = text_flags::final;
        r.ttt.set(kReservedTag);
        ttt_ = kReservedTag;
    }
    r.stat_sn.set(neg_->sn.stat_sn++);
    r.exp_cmd_sn.set(neg_->sn.exp_cmd_sn);
    r.max_cmd_sn.set(neg_->sn.max_cmd_sn);
    append_pdu(out, &r,
               std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(out_text_.data()) + out_off_, n),
               dg);
    out_off_ += n;
    if (!more) {
        out_text_.clear();
        out_off_ = 0;
    }
}

bool TextNegotiator::on_pdu(const uint8_t* bhs, std::span<const uint8_t> data,
                            std::vector<uint8_t>& out, PduDigests dg) {
    const TextReq req = bhs_as<TextReq>(bhs);
    if (Opcode(req.opcode & kOpcodeMask) != Opcode::text_req) return false;
    const bool final = req.flags & text_flags::final, cont = req.flags & text_flags::cont;
    if (final && cont) {
        append_reject(out, RejectReason::protocol_error, bhs, neg_->sn, dg);
        return true;
    }
    const uint32_t ttt = req.ttt.get();
    if (ttt != kReservedTag) {
        // A continuation: it must echo the TTT of our last (non-final) response.
        if (ttt != ttt_) {
            append_reject(out, RejectReason::invalid_pdu_field, bhs, neg_->sn, dg);
            return true;
        }
        if (!out_text_.empty()) {  // the rest of our long response: no text from them
            if (!data.empty() || cont) {
                append_reject(out, RejectReason::protocol_error, bhs, neg_->sn, dg);
                return true;
            }
            respond(req, out, dg);
            return true;
        }
        // Otherwise more of the initiator's own C-bit text follows.
    } else {
        // A new negotiation resets any pending one (§11.10.4).
        in_text_.clear();
        out_text_.clear();
        out_off_ = 0;
        ttt_ = kReservedTag;
    }
    if (in_text_.size() + data.size() > LoginConnection::kMaxLoginText) {
        in_text_.clear();
        append_reject(out, RejectReason::protocol_error, bhs, neg_->sn, dg);
        return true;
    }
    in_text_.append(reinterpret_cast<const char*>(data.data()), data.size());
    if (cont) {  // an empty, non-final response with a TTT, until the text is complete
        respond(req, out, dg, /*ack_only=*/true);
        return true;
    }
    std::string text = std::move(in_text_);
    in_text_.clear();
    std::vector<KeyValue> kvs;
    if (parse_text(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()),
                                            text.size()),
                   kvs) != TextError::none) {
        append_reject(out, RejectReason::protocol_error, bhs, neg_->sn, dg);
        return true;
    }
    std::string rsp;
    for (const auto& kv : kvs) {
        const KeyDef* d = find_key(kv.key);
        if (!d) {
            append_key(rsp, kv.key, "NotUnderstood");
            continue;
        }
        if (d->id == KeyId::send_targets) {
            const auto entries = host_->send_targets(neg_->initiator_name);
            rsp += build_send_targets(entries, kv.value,
                                      neg_->session_type == SessionType::discovery,
                                      neg_->target_name);
        } else if (d->id == KeyId::max_recv_data_segment_length) {
            const auto n = decode_number(kv.value);
            if (!n || *n < d->min || *n > d->max)
                append_key(rsp, d->name, "Reject");
            else
                neg_->initiator_mrdsl = uint32_t(*n);
        } else {
            append_key(rsp, d->name, "Reject");  // no renegotiation in full feature phase
        }
    }
    out_text_ = std::move(rsp);
    out_off_ = 0;
    respond(req, out, dg);
    return true;
}

}  // namespace strata::iscsi
