//! The common UDP reply written straight to bytes: a positive answer of A, AAAA and NS
//! records with glue, and its OPT record.
//!
//! hickory's encoder allocates for every label of every name it writes (its compression
//! table keeps a copy of each suffix), which made encoding the largest part of an answer's
//! cost. Every other reply (SOA, errors, truncation, other EDNS content) still goes through
//! hickory, and a property test in `handler.rs` checks that a reply written here parses to
//! the message hickory writes. Names below the zone (nameservers) point at the zone's name
//! in the question, so they take the question's case, as the answers' owners do.

use std::net::IpAddr;

use crate::answer::{Answer, Owner, RData, Rcode, Rec};
use crate::name::push_nameserver_label;

/// The request's header fields a response echoes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Echo {
    /// Query id.
    pub id: u16,
    /// OPCODE (4 bits).
    pub op_code: u8,
    /// RD.
    pub recursion_desired: bool,
    /// CD.
    pub checking_disabled: bool,
}

/// The response's OPT record (RFC 6891): payload size and, if the client sent one, its
/// subnet with the scope the answer holds for (RFC 7871).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opt {
    /// The payload size the reply advertises and fits in: the client's, capped at what
    /// this server sends (RFC 6891 section 6.2.5).
    pub max_payload: u16,
    /// DO, copied from the query (RFC 3225).
    pub dnssec_ok: bool,
    /// (address, source prefix, scope prefix).
    pub subnet: Option<(IpAddr, u8, u8)>,
}

/// Writes the response to a query whose question section is `question` (as sent: one
/// name, type and class), or `None` if it is not of the kind written here or would exceed
/// `limit` bytes (hickory then writes it, truncating). `zone_labels` is the zone's label
/// count.
pub(crate) fn encode(
    echo: Echo,
    question: &[u8],
    zone_labels: usize,
    answer: &Answer,
    opt: Option<&Opt>,
    limit: usize,
) -> Option<Vec<u8>> {
    if answer.rcode != Rcode::NoError || answer.answers.is_empty() {
        return None;
    }
    let apex = HEADER + apex_offset(question, zone_labels)?;
    let mut w = Writer {
        out: Vec::with_capacity(512),
        // Pointers reach the first 16 KiB only; a name ends within 255 bytes of the header.
        apex: u16::try_from(apex).ok().filter(|a| *a < 0x4000)?,
        nameservers: Vec::new(),
    };
    let count = |n: usize| u16::try_from(n).ok();
    let additional = answer.additional.len() + usize::from(opt.is_some());
    w.out.extend_from_slice(&echo.id.to_be_bytes());
    w.out.push(
        0x80 | (echo.op_code & 0x0f) << 3
            | u8::from(answer.authoritative) << 2
            | u8::from(echo.recursion_desired),
    );
    w.out.push(u8::from(echo.checking_disabled) << 4);
    for n in [1, answer.answers.len(), answer.authority.len(), additional] {
        w.out.extend_from_slice(&count(n)?.to_be_bytes());
    }
    w.out.extend_from_slice(question);
    for r in answer
        .answers
        .iter()
        .chain(&answer.authority)
        .chain(&answer.additional)
    {
        w.record(r)?;
    }
    if let Some(opt) = opt {
        w.opt(opt);
    }
    (w.out.len() <= limit).then_some(w.out)
}

const HEADER: usize = 12;
const CLASS_IN: u16 = 1;
const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const OPTION_SUBNET: u16 = 8;

/// Offset within the question of the zone's first label, if the question is one
/// uncompressed name with its type and class and has at least `zone_labels` labels.
fn apex_offset(question: &[u8], zone_labels: usize) -> Option<usize> {
    // Label starts, from the question's start: one walk to check and count, one to find.
    let starts = || {
        let mut at = 0;
        std::iter::from_fn(move || {
            let len = usize::from(*question.get(at)?);
            let start = at;
            at += 1 + len;
            (len != 0).then_some((start, len))
        })
    };
    let mut labels = 0;
    let mut end = 0;
    for (start, len) in starts() {
        if len > 63 {
            return None; // a compression pointer or a reserved label type
        }
        labels += 1;
        end = start + 1 + len;
    }
    if end + 1 + 4 != question.len() || zone_labels == 0 || labels < zone_labels {
        return None;
    }
    starts().nth(labels - zone_labels).map(|(start, _)| start)
}

struct Writer {
    out: Vec<u8>,
    /// Where the zone's name is (inside the question).
    apex: u16,
    /// Nameserver names already written, and where.
    nameservers: Vec<(IpAddr, u16)>,
}

impl Writer {
    fn pointer(&mut self, at: u16) {
        debug_assert!(at < 0x4000, "compression pointer out of range");
        self.out.extend_from_slice(&(0xc000 | at).to_be_bytes());
    }

    /// A nameserver's name: a pointer to it if already written, else its label and a
    /// pointer to the zone.
    fn nameserver(&mut self, ip: IpAddr) -> Option<()> {
        if let Some(&(_, at)) = self.nameservers.iter().find(|(i, _)| *i == ip) {
            self.pointer(at);
            return Some(());
        }
        let at = self.out.len();
        self.out.push(0);
        push_nameserver_label(ip, &mut self.out);
        let len = self.out.len() - at - 1;
        if !(1..=63).contains(&len) {
            return None;
        }
        *self.out.get_mut(at)? = u8::try_from(len).ok()?;
        // Pointers reach the first 16 KiB only; a UDP reply never goes that far.
        self.nameservers
            .push((ip, u16::try_from(at).ok().filter(|a| *a < 0x4000)?));
        self.pointer(self.apex);
        Some(())
    }

    fn record(&mut self, r: &Rec) -> Option<()> {
        let rtype = match r.data {
            RData::A(_) => TYPE_A,
            RData::Aaaa(_) => TYPE_AAAA,
            RData::Ns(_) => TYPE_NS,
            RData::Soa { .. } => return None,
        };
        match r.name {
            Owner::Query => self.pointer(HEADER as u16),
            Owner::Apex => self.pointer(self.apex),
            Owner::Nameserver(ip) => self.nameserver(ip)?,
        }
        self.out.extend_from_slice(&rtype.to_be_bytes());
        self.out.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.out.extend_from_slice(&r.ttl.to_be_bytes());
        let length_at = self.out.len();
        self.out.extend_from_slice(&[0, 0]);
        match r.data {
            RData::A(v4) => self.out.extend_from_slice(&v4.octets()),
            RData::Aaaa(v6) => self.out.extend_from_slice(&v6.octets()),
            RData::Ns(ip) => self.nameserver(ip)?,
            RData::Soa { .. } => {} // refused above
        }
        let length = u16::try_from(self.out.len() - length_at - 2).ok()?;
        self.out
            .get_mut(length_at..length_at + 2)?
            .copy_from_slice(&length.to_be_bytes());
        Some(())
    }

    fn opt(&mut self, opt: &Opt) {
        self.out.push(0); // the root name
        self.out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        self.out.extend_from_slice(&opt.max_payload.to_be_bytes());
        // Extended RCODE 0, version 0, then the flags: DO is the top bit.
        self.out
            .extend_from_slice(&[0, 0, u8::from(opt.dnssec_ok) << 7, 0]);
        let Some((addr, source, scope)) = opt.subnet else {
            self.out.extend_from_slice(&[0, 0]);
            return;
        };
        let (family, octets, len): (u16, [u8; 16], usize) = match addr {
            IpAddr::V4(v4) => (1, v4.to_ipv6_mapped().octets(), 4),
            IpAddr::V6(v6) => (2, v6.octets(), 16),
        };
        // An IPv4 address sits in the last 4 bytes of its mapped form.
        let octets = octets.get(16 - len..).unwrap_or_default();
        let kept = usize::from(source).div_ceil(8).min(octets.len());
        let option_len = 4 + kept as u16;
        self.out.extend_from_slice(&(4 + option_len).to_be_bytes());
        self.out.extend_from_slice(&OPTION_SUBNET.to_be_bytes());
        self.out.extend_from_slice(&option_len.to_be_bytes());
        self.out.extend_from_slice(&family.to_be_bytes());
        self.out.push(source);
        self.out.push(scope);
        self.out
            .extend_from_slice(octets.get(..kept).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn question(name: &str) -> Vec<u8> {
        let mut q = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    fn query_echo(id: u16, recursion_desired: bool) -> Echo {
        Echo {
            id,
            op_code: 0,
            recursion_desired,
            checking_disabled: false,
        }
    }

    #[test]
    fn the_apex_is_found_by_label_and_odd_questions_are_left_to_hickory() {
        let q = question("www.Example.com.CDN.test");
        assert_eq!(apex_offset(&q, 2), Some(1 + 3 + 1 + 7 + 1 + 3));
        assert_eq!(apex_offset(&q, 6), None, "fewer labels than the zone");
        let mut pointer = q.clone();
        pointer[0] = 0xc0;
        assert_eq!(apex_offset(&pointer, 2), None);
        assert_eq!(apex_offset(&q[..q.len() - 1], 2), None, "cut short");
    }

    #[test]
    fn nameserver_names_are_written_once_then_pointed_at() {
        let ns = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let answer = Answer {
            rcode: Rcode::NoError,
            authoritative: true,
            answers: vec![Rec {
                name: Owner::Query,
                ttl: 30,
                data: RData::A(Ipv4Addr::new(192, 0, 2, 1)),
            }],
            authority: vec![Rec {
                name: Owner::Apex,
                ttl: 3600,
                data: RData::Ns(ns),
            }],
            additional: vec![Rec {
                name: Owner::Nameserver(ns),
                ttl: 3600,
                data: RData::A(Ipv4Addr::new(10, 0, 0, 1)),
            }],
            ecs_scope: None,
        };
        let echo = query_echo(7, true);
        let q = question("a.cdn.test");
        let bytes = encode(echo, &q, 2, &answer, None, 512).unwrap();
        let written = bytes.windows(11).filter(|w| w == b"ns-10-0-0-1").count();
        assert_eq!(
            written, 1,
            "the glue's owner points at the NS record's name"
        );
        assert_eq!(&bytes[..4], &[0, 7, 0x85, 0], "id, QR AA RD");
        assert!(encode(echo, &q, 2, &answer, None, bytes.len() - 1).is_none());
    }

    #[test]
    fn only_positive_answers_without_soa_are_written_here() {
        let a = |rcode, answers: Vec<Rec>, authority: Vec<Rec>| Answer {
            rcode,
            authoritative: true,
            answers,
            authority,
            additional: Vec::new(),
            ecs_scope: None,
        };
        let addr = Rec {
            name: Owner::Query,
            ttl: 30,
            data: RData::A(Ipv4Addr::new(192, 0, 2, 1)),
        };
        let soa = Rec {
            name: Owner::Apex,
            ttl: 60,
            data: RData::Soa {
                mname: "ns.cdn.test".into(),
                rname: "hostmaster.cdn.test".into(),
                timers: crate::answer::SoaTimers {
                    serial: 1,
                    refresh: 1,
                    retry: 1,
                    expire: 1,
                    minimum: 1,
                },
            },
        };
        let echo = query_echo(1, false);
        let q = question("a.cdn.test");
        let write = |answer: &Answer| encode(echo, &q, 2, answer, None, 512);
        assert!(write(&a(Rcode::NoError, vec![addr.clone()], Vec::new())).is_some());
        assert!(
            write(&a(Rcode::NoError, Vec::new(), vec![soa.clone()])).is_none(),
            "NODATA"
        );
        assert!(write(&a(Rcode::NxDomain, Vec::new(), vec![soa.clone()])).is_none());
        assert!(write(&a(Rcode::NoError, vec![addr.clone(), soa], Vec::new())).is_none());
        assert!(write(&a(Rcode::Refused, Vec::new(), Vec::new())).is_none());
        let mut compressed = q.clone();
        compressed.splice(0..0, [0xc0, 0x0c]);
        let answer = a(Rcode::NoError, vec![addr], Vec::new());
        assert!(encode(echo, &compressed, 2, &answer, None, 512).is_none());
    }
}
