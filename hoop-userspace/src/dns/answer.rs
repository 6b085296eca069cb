//! What a DNS answer teaches: the name the agent asked for, the CNAME chain from it, the
//! targets any name of that chain is protected by, and the chain's A/AAAA addresses with
//! their TTLs.

use std::net::IpAddr;

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{Name, RData},
};

use crate::intercept::targets::TargetSet;

/// Longest CNAME chain followed (resolvers stop far earlier).
const MAX_CHAIN: usize = 16;

#[derive(Debug, PartialEq, Eq)]
pub struct Learnable {
    /// The question's name, lower-case, without the trailing dot.
    pub name: String,
    /// Protecting targets, by id.
    pub targets: Vec<u32>,
    /// Addresses of the chain with their records' TTLs.
    pub addrs: Vec<(IpAddr, u32)>,
}

fn plain(n: &Name) -> String {
    let s = n.to_lowercase().to_ascii();
    s.strip_suffix('.').map(str::to_string).unwrap_or(s)
}

/// The learnable content of a response, `None` when no name in its chain is protected.
pub fn analyse(msg: &Message, set: &TargetSet) -> Option<Learnable> {
    if msg.metadata.message_type != MessageType::Response {
        return None;
    }
    let q = msg.queries.first()?;
    let mut chain = vec![plain(&q.name)];
    // follow CNAMEs in whatever order the answer lists them
    for _ in 0..MAX_CHAIN {
        let next = msg.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if chain.contains(&plain(&r.name)) && !chain.contains(&plain(&c.0)) => {
                Some(plain(&c.0))
            }
            _ => None,
        });
        match next {
            Some(n) => chain.push(n),
            None => break,
        }
    }
    let mut targets = Vec::new();
    for n in &chain {
        for id in set.targets_for_name(n) {
            if !targets.contains(&id) {
                targets.push(id);
            }
        }
    }
    if targets.is_empty() {
        return None;
    }
    let addrs = msg
        .answers
        .iter()
        .filter(|r| chain.contains(&plain(&r.name)))
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((IpAddr::V4(a.0), r.ttl)),
            RData::AAAA(a) => Some((IpAddr::V6(a.0), r.ttl)),
            _ => None,
        })
        .collect();
    Some(Learnable {
        name: chain.swap_remove(0),
        targets,
        addrs,
    })
}

/// A SERVFAIL answer to the question of `msg` (what a client gets when a protected answer
/// could not be learned: the lookup fails rather than bypassing).
pub fn servfail(msg: &Message) -> Option<Vec<u8>> {
    let mut out = Message::error_msg(
        msg.metadata.id,
        msg.metadata.op_code,
        ResponseCode::ServFail,
    );
    out.metadata.recursion_desired = msg.metadata.recursion_desired;
    out.metadata.recursion_available = true;
    out.queries = msg.queries.clone();
    out.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::{
        op::{OpCode, Query},
        rr::{Record, RecordType, rdata},
    };

    use super::*;
    use crate::{config::Config, intercept::targets::Resolved};

    fn set() -> TargetSet {
        let cfg = Config::parse(
            r#"
            [[target]]
            name = "pg"
            protocol = "postgres"
            hosts = ["*.postgres.database.azure.com", "*.privatelink.postgres.database.azure.com"]
            ports = [5432]
            [[target]]
            name = "arm"
            protocol = "https"
            hosts = ["management.azure.com"]
            ports = [443]
            "#,
            "t",
        )
        .unwrap();
        TargetSet::build(&cfg, &Resolved::new())
    }

    fn response(qname: &str, answers: Vec<Record>) -> Message {
        let mut m = Message::response(7, OpCode::Query);
        m.add_query(Query::query(Name::from_str(qname).unwrap(), RecordType::A));
        m.answers = answers;
        m
    }

    fn cname(from: &str, to: &str, ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_str(from).unwrap(),
            ttl,
            RData::CNAME(rdata::CNAME(Name::from_str(to).unwrap())),
        )
    }

    fn a(owner: &str, ip: &str, ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_str(owner).unwrap(),
            ttl,
            RData::A(rdata::A(ip.parse().unwrap())),
        )
    }

    #[test]
    fn follows_cname_chain_into_privatelink() {
        let set = set();
        // listed out of order on purpose, with an unrelated record
        let m = response(
            "Db1.postgres.database.azure.com.",
            vec![
                a(
                    "db1.privatelink.postgres.database.azure.com.",
                    "10.1.2.3",
                    30,
                ),
                cname(
                    "db1.postgres.database.azure.com.",
                    "db1.privatelink.postgres.database.azure.com.",
                    300,
                ),
                a("other.example.", "192.0.2.1", 30),
            ],
        );
        let l = analyse(&m, &set).unwrap();
        assert_eq!(l.name, "db1.postgres.database.azure.com");
        assert_eq!(l.addrs, vec![("10.1.2.3".parse().unwrap(), 30)]);
        assert_eq!(l.targets.len(), 1);
    }

    #[test]
    fn a_chain_reaching_a_protected_name_is_protected() {
        // the agent's own alias resolves into a protected name
        let m = response(
            "db.corp.example.",
            vec![
                cname("db.corp.example.", "srv.postgres.database.azure.com.", 60),
                a("srv.postgres.database.azure.com.", "10.9.9.9", 60),
            ],
        );
        let l = analyse(&m, &set()).unwrap();
        assert_eq!(l.name, "db.corp.example");
        assert_eq!(l.addrs.len(), 1);
    }

    #[test]
    fn unprotected_and_apex_names_teach_nothing() {
        let set = set();
        let m = response("example.com.", vec![a("example.com.", "192.0.2.1", 60)]);
        assert!(analyse(&m, &set).is_none());
        let apex = response(
            "postgres.database.azure.com.",
            vec![a("postgres.database.azure.com.", "192.0.2.2", 60)],
        );
        assert!(analyse(&apex, &set).is_none());
        let exact = response(
            "management.azure.com.",
            vec![a("management.azure.com.", "192.0.2.3", 5)],
        );
        assert_eq!(analyse(&exact, &set).unwrap().addrs[0].1, 5);
    }

    #[test]
    fn servfail_keeps_id_and_question() {
        let m = response("db1.postgres.database.azure.com.", vec![]);
        let bytes = servfail(&m).unwrap();
        let back = Message::from_vec(&bytes).unwrap();
        assert_eq!(back.metadata.id, 7);
        assert_eq!(back.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(back.queries, m.queries);
        assert!(back.answers.is_empty());
    }
}
