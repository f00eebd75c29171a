//! The hickory-server adapter: the only file that names hickory's message types. It checks
//! the request (opcode, question count, EDNS version, ECS), applies response rate limiting,
//! asks [`answer`](crate::answer::answer) and encodes the result; it also parses and
//! answers the datagrams the UDP loops (`udp.rs`) read.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_server::net::NetError;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};

use crate::answer::{self, Answer, ClientInfo, Owner, QType, Question, Rcode, Rec, Settings};
use crate::geo::Geo;
use crate::name::ZoneSuffix;
use crate::roster::Roster;
use crate::rrl::{self, Rrl, Verdict};
use crate::wire;

/// Largest UDP response we send (the DNS Flag Day 2020 value); clients may ask for less.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Counters for the status page and metrics.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Queries the zone answered (NOERROR, NXDOMAIN or REFUSED from the answer); malformed
    /// queries and names outside the zone are counted apart, not here.
    pub answered: AtomicU64,
    /// NXDOMAIN answers.
    pub nxdomain: AtomicU64,
    /// REFUSED answers (names outside the zone, other classes).
    pub refused: AtomicU64,
    /// FORMERR, NOTIMP and BADVERS answers.
    pub malformed: AtomicU64,
    /// UDP responses dropped by rate limiting.
    pub rrl_dropped: AtomicU64,
    /// UDP responses sent truncated by rate limiting.
    pub rrl_slipped: AtomicU64,
}

/// Answers queries for the zone from a [`Roster`].
#[derive(Debug)]
pub struct Handler<R: Roster> {
    roster: Arc<R>,
    geo: Geo,
    settings: Settings,
    rrl: Rrl,
    /// Varies the choice among equally good proxies from query to query.
    turn: AtomicU64,
    stats: Arc<DnsStats>,
    names: NameCache,
    /// The zone as a hickory name, for the in-zone check on wire labels.
    zone_name: Name,
}

impl<R: Roster> Handler<R> {
    /// A handler answering for `settings.zone`.
    pub fn new(roster: Arc<R>, geo: Geo, settings: Settings, rrl: Rrl) -> Self {
        let zone_name = fqdn(&settings.zone.as_text()).unwrap_or_else(Name::root);
        Handler {
            roster,
            geo,
            settings,
            rrl,
            turn: AtomicU64::new(0),
            stats: Arc::new(DnsStats::default()),
            names: NameCache::default(),
            zone_name,
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<DnsStats> {
        self.stats.clone()
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::NS => QType::Ns,
        RecordType::SOA => QType::Soa,
        RecordType::ANY => QType::Any,
        other => QType::Other(u16::from(other)),
    }
}

fn fqdn(name: &str) -> Option<Name> {
    if name.ends_with('.') {
        Name::from_ascii(name).ok()
    } else {
        Name::from_ascii(format!("{name}.")).ok()
    }
}

/// Encoded names of nameservers, so the per-query path does not parse text into names.
#[derive(Debug, Default)]
struct NameCache {
    names: Mutex<BTreeMap<IpAddr, Name>>,
}

/// Nameservers whose names are kept; beyond this the cache starts over.
const NAME_CACHE_SIZE: usize = 4096;

impl NameCache {
    fn nameserver(&self, zone: &ZoneSuffix, ip: IpAddr) -> Option<Name> {
        if let Ok(names) = self.names.lock()
            && let Some(n) = names.get(&ip)
        {
            return Some(n.clone());
        }
        let name = fqdn(&zone.nameserver_name(ip))?;
        if let Ok(mut names) = self.names.lock() {
            if names.len() >= NAME_CACHE_SIZE {
                names.clear();
            }
            names.insert(ip, name.clone());
        }
        Some(name)
    }
}

/// Turns answer records into hickory records; `query` is the name asked (its case is kept)
/// and `apex` the zone in the same case.
struct Encoder<'a> {
    query: &'a Name,
    apex: Name,
    zone: &'a ZoneSuffix,
    cache: &'a NameCache,
}

impl Encoder<'_> {
    fn owner(&self, owner: &Owner) -> Option<Name> {
        match owner {
            Owner::Query => Some(self.query.clone()),
            Owner::Apex => Some(self.apex.clone()),
            Owner::Nameserver(ip) => self.cache.nameserver(self.zone, *ip),
        }
    }

    fn record(&self, r: &Rec) -> Option<Record> {
        let data = match &r.data {
            answer::RData::A(ip) => RData::A(A(*ip)),
            answer::RData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
            answer::RData::Ns(ip) => RData::NS(NS(self.cache.nameserver(self.zone, *ip)?)),
            answer::RData::Soa {
                mname,
                rname,
                timers,
            } => RData::SOA(SOA::new(
                fqdn(mname)?,
                fqdn(rname)?,
                timers.serial,
                timers.refresh,
                timers.retry,
                timers.expire,
                timers.minimum,
            )),
        };
        Some(Record::from_rdata(self.owner(&r.name)?, r.ttl, data))
    }

    /// All sections' records in one vector (one allocation of the right size), in order.
    fn records(&self, sections: [&[Rec]; 3]) -> Option<Vec<Record>> {
        let mut out = Vec::with_capacity(sections.iter().map(|s| s.len()).sum());
        for r in sections.into_iter().flatten() {
            out.push(self.record(r)?);
        }
        Some(out)
    }
}

/// The client subnet of a query, if well formed (RFC 7871 section 7.1.2: a non-zero scope
/// or address bits beyond the source prefix are a FORMERR).
fn client_subnet(edns: Option<&Edns>) -> Result<Option<ClientSubnet>, ()> {
    let Some(EdnsOption::Subnet(cs)) = edns.and_then(|e| e.option(EdnsCode::Subnet)) else {
        return Ok(None);
    };
    if cs.scope_prefix() != 0 {
        return Err(());
    }
    let bits = cs.source_prefix();
    let clean = match cs.addr() {
        IpAddr::V4(v4) => {
            let x = u32::from(v4);
            bits <= 32 && (bits == 32 || x & (u32::MAX >> bits) == 0)
        }
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            bits <= 128 && (bits == 128 || x & (u128::MAX >> bits) == 0)
        }
    };
    if clean { Ok(Some(*cs)) } else { Err(()) }
}

async fn reply_error<H: ResponseHandler>(
    handle: &mut H,
    request: &Request,
    code: ResponseCode,
    edns: Option<&Edns>,
) -> ResponseInfo {
    let resp =
        MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, code);
    handle
        .send_response(resp)
        .await
        .unwrap_or_else(|_| failed(request))
}

/// What to send for a request, decided without IO.
enum Plan {
    /// Nothing: rate limited.
    Drop,
    /// An empty truncated reply, so a real client retries over TCP (the rate limit's slip).
    Slip(Option<Edns>),
    /// An error code and no records.
    Error(ResponseCode, Option<Edns>),
    /// The answer, and the OPT record to send with it.
    Answer(Answer, Option<Edns>),
}

#[async_trait::async_trait]
impl<R: Roster> RequestHandler for Handler<R> {
    async fn handle_request<H: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: H,
    ) -> ResponseInfo {
        let plan = self.plan(request);
        self.send(request, plan, &mut response_handle).await
    }
}

impl<R: Roster> Handler<R> {
    /// Checks the request (and the rate limit, for UDP) and computes the answer.
    fn plan(&self, request: &Request) -> Plan {
        let udp = request.protocol() == Protocol::Udp;
        let now = Instant::now();
        // The response's OPT: its payload size is also the limit UDP replies are cut to.
        let mut edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().min(MAX_UDP_PAYLOAD));
            // RFC 3225: the DO bit is copied (there are no signatures to send with it).
            e.flags_mut().dnssec_ok = req.flags().dnssec_ok;
            e
        });
        let subnet = client_subnet(request.edns.as_ref());
        let bad_version = request.edns.as_ref().is_some_and(|e| e.version() != 0);
        let single = match request.queries.queries() {
            [q] => Some(q),
            _ => None,
        };
        let bad_request = single.is_none() || subnet.is_err();
        let not_query = request.metadata.op_code != OpCode::Query;
        // The query, if it is one to answer, with its name as text (its case kept), made
        // once: for the rate limit's key and for the answer.
        let asked = single
            .filter(|_| !(bad_version || bad_request || not_query))
            .map(|q| (q, q.original().name().to_ascii()));
        // Rate limiting comes first, so error answers cannot be reflected without limit either.
        if udp {
            let key = asked
                .as_ref()
                .map_or(rrl::ERROR_NAME, |(_, name)| rrl::name_key(name));
            match self.rrl.check(request.src().ip(), key, now) {
                Verdict::Send => {}
                Verdict::Drop => {
                    self.stats.rrl_dropped.fetch_add(1, Ordering::Relaxed);
                    return Plan::Drop;
                }
                Verdict::Slip => {
                    self.stats.rrl_slipped.fetch_add(1, Ordering::Relaxed);
                    return Plan::Slip(edns);
                }
            }
        }
        let Some((query, name)) = asked else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            let code = if bad_version {
                ResponseCode::BADVERS
            } else if bad_request {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            return Plan::Error(code, edns);
        };
        let qname = query.original().name();
        // Another class, or a name outside the zone. The zone check runs on the wire labels: a
        // label holding a dot (`x\.cdn`) is not in the zone, whatever its text looks like.
        if query.query_class() != DNSClass::IN || !self.zone_name.zone_of(qname) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Plan::Error(ResponseCode::Refused, edns);
        }
        let client = ClientInfo {
            resolver: request.src().ip(),
            subnet: subnet
                .ok()
                .flatten()
                .map(|cs| (cs.addr(), cs.source_prefix())),
        };
        let snapshot = self.roster.snapshot();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let geo = |ip| self.geo.locate(ip);
        let a: Answer = answer::answer(
            &Question {
                name: &name,
                qtype: qtype(query.query_type()),
            },
            &client,
            &snapshot,
            now,
            &geo,
            &self.settings,
            turn,
        );
        if let (Some(e), Some(Ok(Some(cs))), Some(scope)) =
            (edns.as_mut(), Some(subnet), a.ecs_scope)
        {
            let mut out = cs;
            out.set_scope_prefix(scope);
            e.options_mut().insert(EdnsOption::Subnet(out));
        }
        match a.rcode {
            Rcode::NoError => {}
            Rcode::NxDomain => {
                self.stats.nxdomain.fetch_add(1, Ordering::Relaxed);
            }
            Rcode::Refused => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stats.answered.fetch_add(1, Ordering::Relaxed);
        Plan::Answer(a, edns)
    }

    /// Encodes a plan with hickory and sends it to `handle`.
    async fn send<H: ResponseHandler>(
        &self,
        request: &Request,
        plan: Plan,
        handle: &mut H,
    ) -> ResponseInfo {
        let (a, edns) = match plan {
            Plan::Drop => return failed(request),
            Plan::Slip(edns) => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.truncation = true;
                let resp = MessageResponseBuilder::new(&request.queries, edns.as_ref())
                    .build_no_records(metadata);
                return handle
                    .send_response(resp)
                    .await
                    .unwrap_or_else(|_| failed(request));
            }
            Plan::Error(code, edns) => {
                return reply_error(handle, request, code, edns.as_ref()).await;
            }
            Plan::Answer(a, edns) => (a, edns),
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = a.authoritative;
        metadata.response_code = match a.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::Refused => ResponseCode::Refused,
        };
        let Some(qname) = request
            .queries
            .queries()
            .first()
            .map(|q| q.original().name())
        else {
            return failed(request);
        };
        let labels = usize::from(qname.num_labels());
        let zone_labels = self.settings.zone.num_labels().min(labels);
        let encoder = Encoder {
            query: qname,
            apex: qname.trim_to(zone_labels),
            zone: &self.settings.zone,
            cache: &self.names,
        };
        let Some(records) = encoder.records([&a.answers, &a.authority, &a.additional]) else {
            return reply_error(handle, request, ResponseCode::ServFail, edns.as_ref()).await;
        };
        let (answers, rest) = records.split_at(a.answers.len());
        let (authority, additional) = rest.split_at(a.authority.len());
        let resp = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answers.iter(),
            authority.iter(),
            std::iter::empty(),
            additional.iter(),
        );
        handle
            .send_response(resp)
            .await
            .unwrap_or_else(|_| failed(request))
    }

    /// The answer written by [`wire`], if it is of the kind written there and fits.
    fn wire_reply(&self, request: &Request, a: &Answer, edns: Option<&Edns>) -> Option<Vec<u8>> {
        let echo = wire::Echo {
            id: request.metadata.id,
            op_code: u8::from(request.metadata.op_code),
            recursion_desired: request.metadata.recursion_desired,
            checking_disabled: request.metadata.checking_disabled,
        };
        let opt = match edns {
            None => None,
            Some(e) => Some(wire::Opt {
                max_payload: e.max_payload(),
                dnssec_ok: e.flags().dnssec_ok,
                subnet: opt_subnet(e)?,
            }),
        };
        let limit = opt.as_ref().map_or(512, |o| o.max_payload);
        wire::encode(
            echo,
            request.queries.as_bytes(),
            self.settings.zone.num_labels(),
            a,
            opt.as_ref(),
            usize::from(limit),
        )
    }
}

impl<R: Roster> Handler<R> {
    /// Answers one UDP datagram from `from`: what hickory-server does for a datagram, minus
    /// its task and channel. Nothing for a packet shorter than a header, a response, or an
    /// address that cannot be answered; FORMERR (rate limited, and no larger than the query)
    /// for one that does not parse; else the handler's reply. The reply is returned, not
    /// sent, so the caller can send a batch of them back to back.
    pub async fn answer_datagram(&self, datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        if !answerable(from) {
            return None;
        }
        let header = Header::read(&mut BinDecoder::new(datagram)).ok()?;
        if header.metadata.message_type == MessageType::Response {
            return None;
        }
        let mut reply = Datagram::default();
        match Request::from_bytes(datagram.to_vec(), from, Protocol::Udp) {
            Ok(request) => {
                let plan = self.plan(&request);
                if let Plan::Answer(a, edns) = &plan
                    && let Some(bytes) = self.wire_reply(&request, a, edns.as_ref())
                {
                    return Some(bytes);
                }
                self.send(&request, plan, &mut reply).await;
            }
            Err(_) => {
                // A slip (a truncated reply) makes no sense without a question: dropped too.
                if self.rrl.check(from.ip(), rrl::ERROR_NAME, Instant::now()) != Verdict::Send {
                    self.stats.rrl_dropped.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                // No question is echoed: the one sent did not parse.
                let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
                let resp = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                if let Err(e) = reply.send_response(resp).await {
                    tracing::debug!(error = %e, %from, "encoding a FORMERR failed");
                }
            }
        }
        (!reply.0.is_empty()).then_some(reply.0)
    }
}

/// The subnet option of a response's OPT record, if the record is one [`wire`] writes the
/// same as hickory: version 0, no flag but DO, no extended RCODE, no option but ECS. `None`
/// for anything else (hickory encodes it).
#[allow(clippy::option_option)]
fn opt_subnet(e: &Edns) -> Option<Option<(IpAddr, u8, u8)>> {
    if e.version() != 0 || e.rcode_high() != 0 || e.flags().z != 0 {
        return None;
    }
    match e.options().as_ref() {
        [] => Some(None),
        [(_, EdnsOption::Subnet(cs))] => {
            Some(Some((cs.addr(), cs.source_prefix(), cs.scope_prefix())))
        }
        _ => None,
    }
}

/// Whether a reply to `addr` could reach anyone (hickory-server's check): not port 0, not
/// an unspecified or broadcast address.
fn answerable(addr: SocketAddr) -> bool {
    let ip_ok = match addr.ip() {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_unspecified(),
    };
    addr.port() != 0 && ip_ok
}

/// A reply encoded as a UDP datagram by hickory and kept: the UDP loops send it with their
/// batch, the tests compare it with the hand-written one.
#[derive(Clone, Default)]
struct Datagram(Vec<u8>);

#[async_trait::async_trait]
impl ResponseHandler for Datagram {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, bytes) = encode_for_udp(response)?;
        self.0 = bytes;
        Ok(info)
    }
}

/// A response as a UDP datagram: within the client's buffer size (512 bytes without EDNS),
/// truncated by hickory when it does not fit; a bare SERVFAIL, as hickory-server sends, if
/// it cannot be encoded at all.
fn encode_for_udp<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> Result<(ResponseInfo, Vec<u8>), NetError> {
    let id = response.metadata().id;
    let limit = response.edns().map_or(512, |e| e.max_payload());
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(limit);
    let info = match response.destructive_emit(&mut encoder) {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(error = %e, "encoding a DNS reply failed");
            bytes.clear();
            let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
            metadata.response_code = ResponseCode::ServFail;
            let header = Header {
                metadata,
                counts: HeaderCounts::default(),
            };
            header.emit(&mut BinEncoder::new(&mut bytes))?;
            ResponseInfo::from(header)
        }
    };
    Ok((info, bytes))
}

/// Lets hickory-server's TCP side and the UDP loops share one handler (its rate limiter and
/// counters).
pub(crate) struct SharedHandler<R: Roster>(pub(crate) Arc<Handler<R>>);

#[async_trait::async_trait]
impl<R: Roster> RequestHandler for SharedHandler<R> {
    async fn handle_request<H: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: H,
    ) -> ResponseInfo {
        self.0
            .handle_request::<H, T>(request, response_handle)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::answer::RData as Data;
    use crate::roster::{Proxy, RosterSnapshot, StaticRoster};
    use crate::rrl::RrlConfig;
    use hickory_server::proto::op::{Message, Query};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn handler() -> Handler<StaticRoster> {
        let me = Proxy {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            location: None,
            spare: 1.0,
            overloaded: false,
            last_seen: Instant::now(),
            nameserver: true,
        };
        Handler::new(
            Arc::new(StaticRoster::new(RosterSnapshot::alone(me))),
            Geo::none(),
            Settings::new(ZoneSuffix::parse("Cdn.Example").unwrap()),
            Rrl::new(RrlConfig {
                responses_per_second: 0,
                ..RrlConfig::default()
            }),
        )
    }

    fn ip(n: u8, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
        }
    }

    fn address(n: u8, v6: bool) -> Data {
        match ip(n, v6) {
            IpAddr::V4(a) => Data::A(a),
            IpAddr::V6(a) => Data::Aaaa(a),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every reply written by hand parses to the message hickory writes for the same
        /// answer: names, compression, counts, flags, OPT (DO, payload) and ECS. The query
        /// (with its EDNS) goes through `plan`, as a datagram would; the answer's shape is
        /// drawn freely.
        #[test]
        fn hand_written_replies_match_hickory(
            labels in prop::collection::vec("[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,20}[a-zA-Z0-9])?", 1..6),
            zone_case in any::<bool>(),
            flags in (any::<u16>(), any::<bool>(), any::<bool>()),
            v6 in any::<bool>(),
            addrs in prop::collection::vec(any::<u8>(), 1..4),
            nameservers in prop::collection::vec((any::<u8>(), any::<bool>()), 0..3),
            edns in prop::option::of((0u16..4096, any::<bool>(), prop::option::of((any::<bool>(), 0u8..=128)))),
            scope in prop::option::of(0u8..=24),
        ) {
            let (id, rd, cd) = flags;
            let h = handler();
            // The same case as the configured zone, or another: names under the zone then
            // follow the question's case here and the configured case in hickory's reply.
            let zone = if zone_case { "cDN.exAMPLE." } else { "cdn.example." };
            let name = format!("{}.{zone}", labels.join("."));
            let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
            msg.metadata.recursion_desired = rd;
            msg.metadata.checking_disabled = cd;
            let qtype = if v6 { RecordType::AAAA } else { RecordType::A };
            msg.add_query(Query::query(Name::from_ascii(&name).unwrap(), qtype));
            if let Some((payload, dnssec_ok, subnet)) = edns {
                let mut e = Edns::new();
                e.set_max_payload(payload);
                e.flags_mut().dnssec_ok = dnssec_ok;
                if let Some((v6, source)) = subnet {
                    let addr = if v6 {
                        let bits = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 7, 7, 7, 7, 7, 7));
                        IpAddr::V6(Ipv6Addr::from(bits.checked_shl(128 - u32::from(source)).map_or(0, |_| bits & !(u128::MAX.checked_shr(u32::from(source)).unwrap_or(0)))))
                    } else {
                        let source = source.min(32);
                        let bits = u32::from(Ipv4Addr::new(203, 0, 113, 77));
                        IpAddr::V4(Ipv4Addr::from(bits & !(u32::MAX.checked_shr(u32::from(source)).unwrap_or(0))))
                    };
                    let source = if v6 { source } else { source.min(32) };
                    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(addr, source, 0)));
                }
                msg.set_edns(e);
            }
            let src = SocketAddr::from(([127, 0, 0, 1], 5353));
            let request =
                Request::from_bytes(msg.to_vec().unwrap(), src, Protocol::Udp).unwrap();
            let Plan::Answer(_, mut opt) = h.plan(&request) else {
                return Err(TestCaseError::fail("no answer planned"));
            };
            // `plan` echoes the subnet with the scope the answer holds for.
            if let (Some(e), Some(scope)) = (opt.as_mut(), scope)
                && let Some(EdnsOption::Subnet(cs)) = e.option(EdnsCode::Subnet)
            {
                let mut cs = *cs;
                cs.set_scope_prefix(scope.min(cs.source_prefix()));
                e.options_mut().remove(EdnsCode::Subnet);
                e.options_mut().insert(EdnsOption::Subnet(cs));
            }
            let answer = Answer {
                rcode: Rcode::NoError,
                authoritative: id % 2 == 0,
                answers: addrs.iter().map(|&n| Rec { name: Owner::Query, ttl: 30, data: address(n, v6) }).collect(),
                authority: nameservers.iter().map(|&(n, v6)| Rec { name: Owner::Apex, ttl: 3600, data: Data::Ns(ip(n, v6)) }).collect(),
                additional: nameservers.iter().map(|&(n, v6)| Rec { name: Owner::Nameserver(ip(n, v6)), ttl: 3600, data: address(n, v6) }).collect(),
                ecs_scope: None,
            };
            let ours = h.wire_reply(&request, &answer, opt.as_ref());
            let mut theirs = Datagram::default();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(h.send(&request, Plan::Answer(answer, opt), &mut theirs));
            let theirs = theirs.0;
            let Some(ours) = ours else {
                // Left to hickory only when it would not fit (hickory then truncates).
                let limit = edns.map_or(512, |(p, _, _)| usize::from(p.clamp(512, MAX_UDP_PAYLOAD)));
                prop_assert!(theirs.len() > limit || Message::from_vec(&theirs).unwrap().metadata.truncation);
                return Ok(());
            };
            prop_assert!(ours.len() <= theirs.len(), "not compressed as well as hickory");
            let (ours, theirs) = (Message::from_vec(&ours).unwrap(), Message::from_vec(&theirs).unwrap());
            if !zone_case {
                // Same case everywhere: the messages print the same, names and all.
                prop_assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
            }
            let owners = |m: &Message| m.answers.iter().map(|r| r.name.to_string()).collect::<Vec<_>>();
            prop_assert_eq!(owners(&ours), vec![name.clone(); addrs.len()]);
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn answers_over_the_size_limit_are_left_to_hickory() {
        let h = handler();
        let mut msg = Message::new(1, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(
            Name::from_ascii("a.cdn.example.").unwrap(),
            RecordType::A,
        ));
        let src = SocketAddr::from(([127, 0, 0, 1], 5353));
        let request = Request::from_bytes(msg.to_vec().unwrap(), src, Protocol::Udp).unwrap();
        let many = Answer {
            rcode: Rcode::NoError,
            authoritative: true,
            answers: (0..40)
                .map(|n| Rec {
                    name: Owner::Query,
                    ttl: 30,
                    data: address(n, false),
                })
                .collect(),
            authority: Vec::new(),
            additional: Vec::new(),
            ecs_scope: None,
        };
        assert!(
            h.wire_reply(&request, &many, None).is_none(),
            "over 512 bytes without EDNS"
        );
        let mut few = many.clone();
        few.answers.truncate(3);
        assert!(h.wire_reply(&request, &few, None).is_some());
    }
}
