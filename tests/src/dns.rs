//! A real DNS server on loopback for the routing tests: hickory-server on UDP and TCP (same port of
//! 127.0.0.1), answering from an in-memory table the test changes while the server runs, and counting
//! the queries it receives (to see what the resolver's cache kept).
//!
//! Answers: the records of the asked name and type; NODATA (NOERROR, empty answer, SOA in authority)
//! when the name has records of other types only; NXDOMAIN (with SOA) when it has none; or the failure
//! set for the name. The SOA has TTL and minimum 0, so negative answers are not cached by resolvers and
//! a name added later is seen at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

/// How a name's queries fail instead of being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsFailure {
    /// Answer SERVFAIL.
    ServFail,
    /// Answer REFUSED.
    Refused,
    /// Never answer (the resolver times out).
    Timeout,
}

/// The server's data, shared between the test (which changes it) and the request handler.
#[derive(Default)]
struct Table {
    /// Records by owner name (lowercase, no trailing dot).
    records: HashMap<String, Vec<Record>>,
    /// Failures by name; they take precedence over records.
    failures: HashMap<String, DnsFailure>,
    /// Queries received, by name and type (failed and unanswered ones included).
    queries: HashMap<(String, RecordType), usize>,
    /// Queries received over TCP (resolvers use it when a UDP answer was truncated).
    tcp_queries: usize,
}

/// What to send for one query.
enum Answer {
    /// Nothing ([`DnsFailure::Timeout`]).
    Silence,
    /// An error response code without records.
    Error(ResponseCode),
    /// NOERROR with these answers (empty: NODATA), or NXDOMAIN; an SOA goes in the authority section
    /// when `answers` is empty.
    Records {
        /// NOERROR or NXDOMAIN.
        code: ResponseCode,
        /// The answer section, owner names set to the query name as asked.
        answers: Vec<Record>,
    },
}

impl Table {
    /// Counts the query and decides its answer.
    fn answer(&mut self, name: &Name, record_type: RecordType) -> Answer {
        let key = key(&name.to_ascii());
        *self.queries.entry((key.clone(), record_type)).or_default() += 1;
        match self.failures.get(&key) {
            Some(DnsFailure::ServFail) => return Answer::Error(ResponseCode::ServFail),
            Some(DnsFailure::Refused) => return Answer::Error(ResponseCode::Refused),
            Some(DnsFailure::Timeout) => return Answer::Silence,
            None => {}
        }
        let Some(records) = self.records.get(&key).filter(|records| !records.is_empty()) else {
            return Answer::Records {
                code: ResponseCode::NXDomain,
                answers: Vec::new(),
            };
        };
        let answers: Vec<Record> = records
            .iter()
            .filter(|record| record.record_type() == record_type)
            .map(|record| {
                let mut record = record.clone();
                record.name = name.clone();
                record
            })
            .collect();
        Answer::Records {
            code: ResponseCode::NoError,
            answers,
        }
    }
}

/// The negative-answer SOA: TTL and minimum 0 (no negative caching).
fn soa(owner: &Name) -> Record {
    let mname = Name::from_ascii("ns.penguin.test.").expect("static name");
    let rname = Name::from_ascii("hostmaster.penguin.test.").expect("static name");
    let data = SOA::new(mname, rname, 1, 3600, 600, 86_400, 0);
    Record::from_rdata(owner.clone(), 0, RData::SOA(data))
}

/// A table key: lowercase, without the trailing dot.
fn key(name: &str) -> String {
    let trimmed = name.trim();
    trimmed.strip_suffix('.').unwrap_or(trimmed).to_ascii_lowercase()
}

/// A fully qualified DNS name from a test's name (`"."` is the root).
fn dns_name(name: &str) -> Name {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&fqdn).unwrap_or_else(|err| panic!("bad DNS name {name:?}: {err}"))
}

/// The hickory request handler: answers from the shared table.
struct Handler {
    /// The table the test controls.
    table: Arc<Mutex<Table>>,
}

impl Handler {
    /// Answers one request (or stays silent).
    async fn respond<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let silent = ResponseInfo::from(Header {
            metadata: Metadata::response_from_request(&request.metadata),
            counts: HeaderCounts::default(),
        });
        let mut edns = Edns::new();
        edns.set_max_payload(1232).set_version(0);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if request.edns.is_some() {
            builder.edns(&edns);
        }
        let Ok(info) = request.request_info() else {
            let response = builder.error_msg(&request.metadata, ResponseCode::FormErr);
            return handle.send_response(response).await.unwrap_or(silent);
        };
        let name = info.query.original().name().clone();
        let answer = {
            let mut table = lock(&self.table);
            if request.protocol() == Protocol::Tcp {
                table.tcp_queries += 1;
            }
            table.answer(&name, info.query.query_type())
        };
        let sent = match answer {
            Answer::Silence => return silent,
            Answer::Error(code) => {
                handle
                    .send_response(builder.error_msg(&request.metadata, code))
                    .await
            }
            Answer::Records { code, answers } => {
                let soa = answers.is_empty().then(|| soa(&name));
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = true;
                metadata.response_code = code;
                let response = builder.build(metadata, answers.iter(), [], soa.iter(), []);
                handle.send_response(response).await
            }
        };
        sent.unwrap_or(silent)
    }
}

impl RequestHandler for Handler {
    // The trait is declared with `#[async_trait]`; this is its expansion, written out so that the tests
    // need no async-trait dependency.
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.respond(request, response_handle))
    }
}

/// Locks the table (a panicking test thread does not make it unusable for the server).
fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A DNS server on 127.0.0.1 (UDP and TCP on one port) answering from a table the test controls.
/// Dropping it stops the server: its tasks are aborted.
pub struct TestDns {
    /// Where the server listens (UDP and TCP): give it to the resolver as its name server.
    pub address: SocketAddr,
    /// The data the server answers from.
    table: Arc<Mutex<Table>>,
    /// The running server; dropping it aborts its tasks.
    server: Server<Handler>,
}

impl TestDns {
    /// Starts a server with an empty table (every name NXDOMAIN).
    pub async fn start() -> TestDns {
        let (udp, tcp) = bind_same_port().await;
        let address = udp.local_addr().expect("UDP address");
        let table = Arc::new(Mutex::new(Table::default()));
        let mut server = Server::new(Handler {
            table: Arc::clone(&table),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 32);
        TestDns {
            address,
            table,
            server,
        }
    }

    /// Adds an MX record (`exchange` `"."` makes the null MX of RFC 7505).
    pub fn add_mx(&self, domain: &str, preference: u16, exchange: &str, ttl: u32) {
        self.add(domain, ttl, RData::MX(MX::new(preference, dns_name(exchange))));
    }

    /// Adds an A record.
    pub fn add_a(&self, name: &str, ip: Ipv4Addr, ttl: u32) {
        self.add(name, ttl, RData::A(A(ip)));
    }

    /// Adds an AAAA record.
    pub fn add_aaaa(&self, name: &str, ip: Ipv6Addr, ttl: u32) {
        self.add(name, ttl, RData::AAAA(AAAA(ip)));
    }

    /// Adds a TXT record; text longer than 255 bytes is split into several strings, as DKIM keys are.
    pub fn add_txt(&self, name: &str, text: &str, ttl: u32) {
        self.add(name, ttl, RData::TXT(TXT::new(penguin_dkim::txt_strings(text))));
    }

    /// Adds one TXT record made of these character-strings (each at most 255 bytes), as a zone file
    /// line `name IN TXT "…" "…"` publishes it; resolvers concatenate them.
    pub fn add_txt_strings(&self, name: &str, strings: &[&str], ttl: u32) {
        let strings = strings.iter().map(|s| (*s).to_string()).collect();
        self.add(name, ttl, RData::TXT(TXT::new(strings)));
    }

    /// Adds a PTR record for `ip` (at its in-addr.arpa / ip6.arpa name) pointing to `name`.
    pub fn add_ptr(&self, ip: std::net::IpAddr, name: &str, ttl: u32) {
        let owner = Name::from(ip).to_ascii();
        let target = hickory_proto::rr::rdata::PTR(dns_name(name));
        self.add(&owner, ttl, RData::PTR(target));
    }

    /// Makes every query for `name` fail this way (until [`TestDns::clear`]).
    pub fn set_failure(&self, name: &str, failure: DnsFailure) {
        lock(&self.table).failures.insert(key(name), failure);
    }

    /// Removes every record and the failure of `name` (it becomes NXDOMAIN); its query counts stay.
    pub fn clear(&self, name: &str) {
        let mut table = lock(&self.table);
        table.records.remove(&key(name));
        table.failures.remove(&key(name));
    }

    /// How many queries for `name` of `record_type` (`"MX"`, `"A"`, `"AAAA"`, `"TXT"`, …) arrived.
    pub fn queries(&self, name: &str, record_type: &str) -> usize {
        let record_type = RecordType::from_str(record_type)
            .unwrap_or_else(|_| panic!("unknown record type {record_type:?}"));
        let table = lock(&self.table);
        table.queries.get(&(key(name), record_type)).copied().unwrap_or(0)
    }

    /// How many queries arrived over TCP.
    pub fn tcp_queries(&self) -> usize {
        lock(&self.table).tcp_queries
    }

    /// How many queries arrived in all.
    pub fn total_queries(&self) -> usize {
        lock(&self.table).queries.values().sum()
    }

    /// Stops the server and waits until its sockets are closed (dropping it stops it too, without
    /// waiting).
    pub async fn stop(mut self) {
        tokio::time::timeout(crate::WAIT, self.server.shutdown_gracefully())
            .await
            .expect("DNS server stops in time")
            .expect("DNS server stops cleanly");
    }

    /// Adds one record to `name`.
    fn add(&self, name: &str, ttl: u32, data: RData) {
        let record = Record::from_rdata(dns_name(name), ttl, data);
        lock(&self.table)
            .records
            .entry(key(name))
            .or_default()
            .push(record);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        // Stops the accept loops; dropping `server` (next) aborts whatever still runs.
        self.server.shutdown_token().cancel();
    }
}

/// A UDP socket and a TCP listener on the same loopback port (a port free for UDP may be taken for
/// TCP: try again with another).
async fn bind_same_port() -> (UdpSocket, TcpListener) {
    let mut last_error = None;
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind UDP on loopback");
        let address = udp.local_addr().expect("UDP address");
        match TcpListener::bind(address).await {
            Ok(tcp) => return (udp, tcp),
            Err(err) => last_error = Some(err),
        }
    }
    panic!("no loopback port free for both UDP and TCP: {last_error:?}");
}
