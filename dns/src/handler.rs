//! The hickory-server adapter: the only file that names hickory's message types. It checks
//! the request (opcode, question count, EDNS version, ECS), applies response rate limiting,
//! asks [`answer`](crate::answer::answer) and encodes the result; it also parses and
//! answers the datagrams [`udp`](crate::udp) reads.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioTime};
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
use tokio::net::UdpSocket;

use crate::answer::{self, Answer, ClientInfo, Owner, QType, Question, Rcode, Rec, Settings};
use crate::geo::Geo;
use crate::name::ZoneSuffix;
use crate::roster::Roster;
use crate::rrl::{self, Rrl, Verdict};

/// Largest UDP response we send (the DNS Flag Day 2020 value); clients may ask for less.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Counters for the status page and metrics.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Queries answered (any response code).
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

#[async_trait::async_trait]
impl<R: Roster> RequestHandler for Handler<R> {
    async fn handle_request<H: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: H,
    ) -> ResponseInfo {
        let udp = request.protocol() == Protocol::Udp;
        // The response's OPT: its payload size is also the limit hickory truncates UDP to.
        let mut edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().min(MAX_UDP_PAYLOAD));
            e
        });
        let subnet = client_subnet(request.edns.as_ref());
        let bad_version = request.edns.as_ref().is_some_and(|e| e.version() != 0);
        let bad_request = request.queries.len() != 1 || subnet.is_err();
        let not_query = request.metadata.op_code != OpCode::Query;
        // The query's name as text (its case kept), made once: for the rate limit's key and
        // for the answer.
        let text = match request.queries.queries() {
            [q] if !(bad_version || bad_request || not_query) => {
                Some(q.original().name().to_ascii())
            }
            _ => None,
        };
        // Rate limiting comes first, so error answers cannot be reflected without limit either.
        if udp {
            let key = text.as_deref().map_or(rrl::ERROR_NAME, rrl::name_key);
            match self.rrl.check(request.src().ip(), key, Instant::now()) {
                Verdict::Send => {}
                Verdict::Drop => {
                    self.stats.rrl_dropped.fetch_add(1, Ordering::Relaxed);
                    return failed(request);
                }
                Verdict::Slip => {
                    self.stats.rrl_slipped.fetch_add(1, Ordering::Relaxed);
                    let mut metadata = Metadata::response_from_request(&request.metadata);
                    metadata.truncation = true;
                    let resp = MessageResponseBuilder::new(&request.queries, edns.as_ref())
                        .build_no_records(metadata);
                    return response_handle
                        .send_response(resp)
                        .await
                        .unwrap_or_else(|_| failed(request));
                }
            }
        }
        if bad_version || bad_request || not_query {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            let code = if bad_version {
                ResponseCode::BADVERS
            } else if bad_request {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            return reply_error(&mut response_handle, request, code, edns.as_ref()).await;
        }
        let query = &request.queries.queries()[0];
        let qname = query.original().name();
        // Another class, or a name outside the zone. The zone check runs on the wire labels: a
        // label holding a dot (`x\.cdn`) is not in the zone, whatever its text looks like.
        if query.query_class() != DNSClass::IN || !self.zone_name.zone_of(qname) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return reply_error(
                &mut response_handle,
                request,
                ResponseCode::Refused,
                edns.as_ref(),
            )
            .await;
        }
        let name = text.unwrap_or_else(|| qname.to_ascii());
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
            Instant::now(),
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
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = a.authoritative;
        metadata.response_code = match a.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => {
                self.stats.nxdomain.fetch_add(1, Ordering::Relaxed);
                ResponseCode::NXDomain
            }
            Rcode::Refused => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                ResponseCode::Refused
            }
        };
        self.stats.answered.fetch_add(1, Ordering::Relaxed);
        let labels = usize::from(qname.num_labels());
        let zone_labels = self.settings.zone.num_labels().min(labels);
        let encoder = Encoder {
            query: qname,
            apex: qname.trim_to(zone_labels),
            zone: &self.settings.zone,
            cache: &self.names,
        };
        let Some(records) = encoder.records([&a.answers, &a.authority, &a.additional]) else {
            return reply_error(
                &mut response_handle,
                request,
                ResponseCode::ServFail,
                edns.as_ref(),
            )
            .await;
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
        response_handle
            .send_response(resp)
            .await
            .unwrap_or_else(|_| failed(request))
    }
}

impl<R: Roster> Handler<R> {
    /// Answers one UDP datagram from `from`, replying on `socket`. What hickory-server does
    /// for a datagram, minus its task and channel: nothing for a packet shorter than a
    /// header, a response, or an address that cannot be answered; FORMERR (rate limited, and
    /// no larger than the query) for one that does not parse; else the handler's answer.
    pub(crate) async fn answer_datagram(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        socket: &Arc<UdpSocket>,
    ) {
        if !answerable(from) {
            return;
        }
        let Ok(header) = Header::read(&mut BinDecoder::new(datagram)) else {
            return;
        };
        if header.metadata.message_type == MessageType::Response {
            return;
        }
        let mut reply = DatagramReply {
            socket: socket.clone(),
            to: from,
        };
        match Request::from_bytes(datagram.to_vec(), from, Protocol::Udp) {
            Ok(request) => {
                self.handle_request::<_, TokioTime>(&request, reply).await;
            }
            Err(_) => {
                if self.rrl.check(from.ip(), rrl::ERROR_NAME, Instant::now()) != Verdict::Send {
                    self.stats.rrl_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                // No question is echoed: the one sent did not parse.
                let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                    return;
                };
                let resp = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                if let Err(e) = reply.send_response(resp).await {
                    tracing::debug!(error = %e, %from, "sending a FORMERR failed");
                }
            }
        }
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

/// Sends a reply straight to one UDP client on the serving socket, encoded within the
/// client's buffer size (512 bytes without EDNS), truncated by hickory when it does not fit.
#[derive(Clone)]
struct DatagramReply {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for DatagramReply {
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
        let id = response.metadata().id;
        let limit = response.edns().map_or(512, |e| e.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(e) => {
                // As hickory-server does: a bare SERVFAIL rather than nothing.
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
        self.socket.send_to(&bytes, self.to).await?;
        Ok(info)
    }
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
