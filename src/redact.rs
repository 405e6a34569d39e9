//! Connection strings with their secrets kept out of everything the service
//! prints: log lines, errors, `Debug` output.
//!
//! Each function reads a string the way its client does, so that whatever
//! the client would take as a password or token is what gets hidden:
//!
//! - [`redact_database_url`]: tokio-postgres's `Config` (through
//!   diesel-async), in both of its forms: the URL
//!   (`postgres://user:password@host1:5432,host2/db?password=…`) and libpq's
//!   `key=value` list (`host=db password='a b' dbname=orders`).
//! - [`NatsUrl`]: async-nats' `ServerAddr` (`nats://user:password@host`,
//!   `nats://token@host`, `tls://`, `ws://`, or a bare `host:port`), in a
//!   comma-separated list.
//!
//! A string the client would not accept is hidden where the reading stops,
//! not shown: a mistyped connection string is as likely to hold a password
//! as a good one.

use std::fmt;

use async_nats::{Client, ConnectError, ConnectOptions};

/// What a hidden value is replaced with.
const HIDDEN: &str = "***";

/// The keys tokio-postgres accepts whose values are not secret. Any other
/// value is hidden: `password`, and keys the client would refuse anyway
/// (`sslpassword` is libpq's, not tokio-postgres's).
const SHOWN_KEYS: &[&str] = &[
    "user",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// A PostgreSQL connection string with every password replaced by `***`,
/// for logs and errors.
///
/// Both forms the client accepts are read as it reads them: a URL's
/// password (after `user:`, percent-encoded or not) and its `password=`
/// parameter, and the `password` of a `key=value` list, quoted or not. Of a
/// string the client could not read, the part from where reading fails is
/// hidden too.
pub(crate) fn redact_database_url(url: &str) -> String {
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return format!("{scheme}{}", redact_postgres_url(rest));
        }
    }
    redact_key_values(url)
}

/// Whether the client would read part of a password as the user name or
/// the host: a URL with more than one unescaped `@` (the client's
/// credentials end at the first, so a raw `@` in a password, as a
/// `password=` parameter or after `user:`, leaves the rest of the password
/// to be read as the host, path or user: `postgres://db/orders?password=a@b`
/// connects as user `db/orders?password=a` to host `b`). Such a URL must be
/// refused before it is used: the host would be looked up, and the server
/// would repeat the user in its errors.
pub(crate) fn database_url_is_misread(url: &str) -> bool {
    ["postgres://", "postgresql://"].iter().any(|scheme| {
        url.strip_prefix(scheme).is_some_and(|rest| {
            rest.matches('@').count() > 1
                || rest
                    .split_once('@')
                    .is_some_and(|(credentials, _)| credentials_misread(credentials))
        })
    })
}

/// Whether the text before a URL's first `@` can only be a misreading: a
/// user name the client got from a path or parameters, or parameters that
/// give a `password=` (its raw `@` ended the credentials).
fn credentials_misread(credentials: &str) -> bool {
    let user = credentials.split_once(':').map_or(credentials, |(u, _)| u);
    shown_user(user) == HIDDEN
        || credentials
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|kv| kv.starts_with("password=")))
}

/// The part of a `postgres://` URL after the scheme, read as tokio-postgres'
/// `UrlParser` reads it.
fn redact_postgres_url(rest: &str) -> String {
    let mut out = String::with_capacity(rest.len());
    let mut rest = rest;
    if let Some(first_at) = rest.find('@') {
        if credentials_misread(&rest[..first_at]) {
            // Part of a password, wherever the client would put it.
            return HIDDEN.to_owned();
        }
        // The client's credentials end at the first '@'. A password with an
        // unescaped '@' (which the client then misreads, and the service
        // refuses) leaves the rest of itself before a later '@': hide up to
        // the last one. An '@' in a parameter's value is hidden with it.
        let at = rest.rfind('@').unwrap_or(first_at);
        let credentials = &rest[..at];
        match credentials.split_once(':') {
            Some((user, _)) => {
                out.push_str(shown_user(user));
                out.push(':');
                out.push_str(HIDDEN);
            }
            None => out.push_str(shown_user(credentials)),
        }
        out.push('@');
        rest = &rest[at + 1..];
    }
    let (hosts_and_path, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    out.push_str(hosts_and_path);
    if let Some(mut query) = query {
        out.push('?');
        let mut first = true;
        while !query.is_empty() {
            if !first {
                out.push('&');
            }
            first = false;
            // As the client does: the key runs to the next '=' (even across
            // a '&'), the value to the next '&'.
            let Some((key, after)) = query.split_once('=') else {
                out.push_str(HIDDEN);
                break;
            };
            let (value, after) = after.split_once('&').unwrap_or((after, ""));
            // A key the client does not know may be the tail of a password
            // holding a raw '&' (`password=a&b&sslmode=…` makes `b&sslmode`
            // a key): only known keys are shown.
            out.push_str(if is_shown_key(key) || key == "password" {
                key
            } else {
                HIDDEN
            });
            out.push('=');
            out.push_str(if is_shown_key(key) { value } else { HIDDEN });
            query = after;
        }
    }
    out
}

/// The user name, unless the client could only have got it by misreading
/// a password into it (`postgres://db/orders?password=a@b` makes
/// `db/orders?password=a` the user).
fn shown_user(user: &str) -> &str {
    if user.contains(['/', '?', '=', '&']) {
        HIDDEN
    } else {
        user
    }
}

fn is_shown_key(key: &str) -> bool {
    SHOWN_KEYS.contains(&key)
}

/// A libpq `key=value` list, read as tokio-postgres' `Parser` reads it, and
/// written back one `key=value` apart from the next.
fn redact_key_values(s: &str) -> String {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        let key_end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        if key.is_empty() {
            // The client stops here and ignores the rest: hide it.
            if !rest.is_empty() {
                out.push(HIDDEN.to_owned());
            }
            break;
        }
        let after_key = rest[key_end..].trim_start();
        let Some(after_eq) = after_key.strip_prefix('=') else {
            // Not a key after all (perhaps the second word of an unquoted
            // password): the client refuses the string; hide the rest.
            out.push(HIDDEN.to_owned());
            break;
        };
        let after_eq = after_eq.trim_start();
        let Some(value_len) = value_len(after_eq) else {
            out.push(format!("{key}={HIDDEN}"));
            break;
        };
        let value = &after_eq[..value_len];
        out.push(format!(
            "{key}={}",
            if is_shown_key(key) { value } else { HIDDEN }
        ));
        rest = &after_eq[value_len..];
    }
    out.join(" ")
}

/// The length of the value at the start of `s`, as written (quotes and
/// backslashes included), or `None` when the client would reject it.
fn value_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    if s.starts_with('\'') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => return Some(i + 1),
                '\\' => {
                    chars.next();
                }
                _ => {}
            }
        }
        None
    } else {
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            if c.is_whitespace() {
                break;
            }
            end = i + c.len_utf8();
            if c == '\\' {
                if let Some((j, escaped)) = chars.next() {
                    end = j + escaped.len_utf8();
                }
            }
        }
        (end > 0).then_some(end)
    }
}

/// A `NATS_URL`: servers separated by commas, each a URL as async-nats
/// reads it (`nats://`, `tls://`, `ws://`, `wss://`, or a bare `host:port`),
/// credentials (`user:password@` or `token@`) in any of them.
///
/// async-nats would put the credentials nowhere (it ignores them, see
/// nats-io/nats.rs#1623) but into its debug logs, which print each server's
/// address whole. So they are taken out of the addresses and given to the
/// client through [`ConnectOptions`], where it keeps them out of its logs.
/// The client has one set of credentials for all servers: the first
/// server's that has any.
///
/// `Display` and `Debug` show the servers with `***` for each secret.
///
/// # Examples
///
/// ```no_run
/// use order_cache::NatsUrl;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = NatsUrl::parse("nats://app:s3cret@n1:4222,nats://n2:4222");
/// assert_eq!(url.to_string(), "nats://app:***@n1:4222,nats://n2:4222");
/// let client = url.connect(async_nats::ConnectOptions::new()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct NatsUrl {
    servers: Vec<NatsServer>,
    credentials: Option<NatsCredentials>,
}

#[derive(Clone)]
struct NatsServer {
    /// The address given to the client: without credentials when it could
    /// be read, as written otherwise (the client then refuses it, and its
    /// error does not repeat it).
    addr: String,
    /// The address with its secret hidden, or all of it when unreadable.
    shown: String,
}

#[derive(Clone)]
enum NatsCredentials {
    UserPassword { user: String, password: String },
    Token(String),
}

impl NatsUrl {
    /// Splits a comma-separated server list into addresses without
    /// credentials and the credentials. Never fails: a server the client
    /// cannot read is handed to it as written, for it to refuse.
    pub fn parse(url: &str) -> NatsUrl {
        let mut credentials = None;
        let servers = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|written| {
                let Ok(addr) = written.parse::<async_nats::ServerAddr>() else {
                    return NatsServer {
                        addr: written.to_owned(),
                        shown: HIDDEN.to_owned(),
                    };
                };
                // A NATS address has no path, query or fragment: one that
                // seems to has a password with a raw '/', '?' or '#' (or
                // '@' before them) that the URL reading split, taking part
                // of the password as the host. Nothing of it is shown, and
                // `connect` refuses it rather than look that host up.
                let url = addr.clone().into_inner();
                let path_misread =
                    matches!(url.scheme(), "nats" | "tls") && !matches!(url.path(), "" | "/");
                if url.query().is_some() || url.fragment().is_some() || path_misread {
                    return NatsServer {
                        addr: String::new(),
                        shown: HIDDEN.to_owned(),
                    };
                }
                let found = NatsCredentials::of(&addr);
                let mut bare = addr.into_inner();
                let mut shown = bare.clone();
                let stripped = bare.set_password(None).is_ok() && bare.set_username("").is_ok();
                let hidden = match &found {
                    None => true,
                    Some(NatsCredentials::UserPassword { .. }) => {
                        shown.set_password(Some(HIDDEN)).is_ok()
                    }
                    Some(NatsCredentials::Token(_)) => shown.set_username(HIDDEN).is_ok(),
                };
                if credentials.is_none() {
                    credentials = found;
                }
                NatsServer {
                    addr: if stripped {
                        bare.to_string()
                    } else {
                        written.to_owned()
                    },
                    shown: if hidden && stripped {
                        shown.to_string()
                    } else {
                        HIDDEN.to_owned()
                    },
                }
            })
            .collect();
        NatsUrl {
            servers,
            credentials,
        }
    }

    /// The servers' addresses, without credentials.
    pub fn addrs(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.addr.clone()).collect()
    }

    /// `options` with the URL's credentials, if it had any.
    pub fn options(&self, options: ConnectOptions) -> ConnectOptions {
        match &self.credentials {
            None => options,
            Some(NatsCredentials::UserPassword { user, password }) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Some(NatsCredentials::Token(token)) => options.token(token.clone()),
        }
    }

    /// Connects to these servers with `options` and the URL's credentials.
    ///
    /// # Errors
    ///
    /// The client's, when no server can be reached or a server cannot be
    /// read; they do not repeat the URL.
    pub async fn connect(&self, options: ConnectOptions) -> Result<Client, ConnectError> {
        if self.servers.iter().any(|s| s.addr.is_empty()) {
            // A server misread above: its "host" may be part of a password.
            return Err(ConnectError::new(async_nats::ConnectErrorKind::ServerParse));
        }
        self.options(options).connect(self.addrs()).await
    }
}

impl NatsCredentials {
    /// `user:password@` as a user and password, a lone `token@` as a token
    /// (as the Go client and the older `nats` crate read them),
    /// percent-decoded.
    fn of(addr: &async_nats::ServerAddr) -> Option<NatsCredentials> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = addr.username()?;
        Some(match addr.password() {
            Some(password) => NatsCredentials::UserPassword {
                user: decode(user),
                password: decode(password),
            },
            None => NatsCredentials::Token(decode(user)),
        })
    }
}

impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, server) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&server.shown)?;
        }
        Ok(())
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NatsUrl").field(&self.to_string()).finish()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn database_urls_in_each_form_lose_their_password() {
        assert_eq!(
            redact_database_url("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(
            redact_database_url(
                "postgresql://db1,db2/orders?user=app&password=s3cret&sslmode=require"
            ),
            "postgresql://db1,db2/orders?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_database_url("host=db user=app password='s3 cret' dbname=orders"),
            "host=db user=app password=*** dbname=orders"
        );
        assert_eq!(
            redact_database_url("postgres://db/orders"),
            "postgres://db/orders"
        );
        assert_eq!(
            NatsUrl::parse("nats://app:s3cret@n1:4222,tls://t0ken@n2:4222").to_string(),
            "nats://app:***@n1:4222,tls://***@n2:4222"
        );
    }
    use super::*;

    #[test]
    fn hides_a_url_password_however_it_is_written() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/orders",
                "postgres://app:***@db:5432/orders",
            ),
            (
                "postgresql://app:s3%2Fc%40ret@db/orders",
                "postgresql://app:***@db/orders",
            ),
            // Unescaped, which the client misreads: still all hidden.
            (
                "postgres://app:s3c@r/et@db/orders",
                "postgres://app:***@db/orders",
            ),
            ("postgres://app:s3c@ret@db/o", "postgres://app:***@db/o"),
            ("postgres://app:@db/o", "postgres://app:***@db/o"),
            (
                "postgres://app:s3cret@h1:5432,h2:5433/o",
                "postgres://app:***@h1:5432,h2:5433/o",
            ),
            (
                "postgres://db/o?password=s3cret",
                "postgres://db/o?password=***",
            ),
            (
                "postgres://db/o?user=app&pass%77ord=s3cret&sslmode=disable",
                "postgres://db/o?user=app&***=***&sslmode=disable",
            ),
            (
                "postgres:///o?host=%2Ftmp&password=s3cret",
                "postgres:///o?host=%2Ftmp&password=***",
            ),
            // The client reads `db/o?password=s3c` as the user here.
            ("postgres://db/o?password=s3c@ret", "postgres://***"),
            // With a port, whose ':' is not the user's.
            (
                "postgres://127.0.0.1:5432/o?user=app&password=s3c@ret",
                "postgres://***",
            ),
            // A raw '@' then '?', '#' or '/' in a user's password.
            (
                "postgres://app:s3@ss/w#rd?x@127.0.0.1:1/o",
                "postgres://app:***@127.0.0.1:1/o",
            ),
            ("postgres://app:s3@ss?w=rd@db/o", "postgres://app:***@db/o"),
            ("postgres://db/o?s3cret", "postgres://db/o?***"),
            // A raw '&' in a password: its tail reads as a key.
            (
                "postgres://db/o?password=head&tail&sslmode=disable",
                "postgres://db/o?password=***&***=***",
            ),
            (
                "postgres://db/o?application_name=x&s3cret&password=y",
                "postgres://db/o?application_name=x&***=***",
            ),
            ("postgres://app@db/orders", "postgres://app@db/orders"),
            ("postgres://db", "postgres://db"),
        ] {
            assert_eq!(redact_database_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_password_the_client_would_read_as_the_user_is_detected() {
        assert!(database_url_is_misread("postgres://db/o?password=a@b"));
        assert!(database_url_is_misread(
            "postgresql://db/o?password=a@b:1/o"
        ));
        assert!(database_url_is_misread(
            "postgres://127.0.0.1:5432/o?user=app&password=a@b"
        ));
        assert!(database_url_is_misread("postgres://app:a@b/c?d@db/o"));
        assert!(database_url_is_misread("postgres://app:a@b@db/o"));
        assert!(!database_url_is_misread("postgres://app:a%40b@db/o"));
        assert!(!database_url_is_misread("postgres://app:a/b?c#d@db/o"));
        assert!(!database_url_is_misread("postgres://app@db/o?password=x"));
        assert!(!database_url_is_misread("host=db password=a@b"));
    }

    #[test]
    fn hides_a_key_value_password_however_it_is_quoted() {
        for (s, shown) in [
            (
                "host=db port=5432 user=app password=s3cret dbname=orders",
                "host=db port=5432 user=app password=*** dbname=orders",
            ),
            (
                "host=db password = 's3 c\\'ret' dbname=orders",
                "host=db password=*** dbname=orders",
            ),
            ("password=s3\\ cret host=db", "password=*** host=db"),
            ("dbname='my db' user=app", "dbname='my db' user=app"),
            // Refused by the client: hidden from where it stops reading.
            ("host=db password=s3 cret", "host=db password=*** ***"),
            ("host=db password='s3cret", "host=db password=***"),
            ("host=db password=", "host=db password=***"),
            ("host=db =s3cret", "host=db ***"),
            ("s3cret", "***"),
            ("mysql://app:s3cret@db/o", "***"),
            ("", ""),
        ] {
            assert_eq!(redact_database_url(s), shown, "{s}");
        }
    }

    #[test]
    fn hides_nats_passwords_and_tokens() {
        for (url, shown) in [
            ("nats://app:s3cret@n1:4222", "nats://app:***@n1:4222"),
            ("nats://t0ken@n1:4222", "nats://***@n1:4222"),
            ("app:s3cret@n1:4222", "nats://app:***@n1:4222"),
            ("tls://app:s3%2Fcret@n1", "tls://app:***@n1"),
            ("ws://app:s3cret@n1:8080", "ws://app:***@n1:8080/"),
            (
                "nats://a:s1@n1:4222, nats://t0ken@n2:4222,n3",
                "nats://a:***@n1:4222,nats://***@n2:4222,nats://n3",
            ),
            ("nats://n1:4222", "nats://n1:4222"),
            ("nats://app:s3cret@n1:port", "***"),
            ("http://app:s3cret@n1", "***"),
            // Raw '@' then '?', '#' or '/' in the password: the URL reading
            // makes a host of part of it.
            ("nats://app:s3@ng?pa#ss/word@n1:4222", "***"),
            ("nats://app:s3@ng#pass@n1:4222", "***"),
            ("nats://app:s3@b/c@n1:4222", "***"),
            (
                "nats://n1:4222,nats://app:s3@b/c@n2:4222",
                "nats://n1:4222,***",
            ),
        ] {
            assert_eq!(NatsUrl::parse(url).to_string(), shown, "{url}");
            assert!(!format!("{:?}", NatsUrl::parse(url)).contains("s3"));
        }
    }

    #[tokio::test]
    async fn a_misread_nats_address_is_refused_before_any_host_is_looked_up() {
        let url = NatsUrl::parse("nats://app:s3@ng?pa#ss/word@127.0.0.1:4222");
        let e = url
            .connect(ConnectOptions::new())
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), async_nats::ConnectErrorKind::ServerParse);
        assert!(!e.to_string().contains("s3") && !e.to_string().contains("ng"));
    }

    #[test]
    fn takes_nats_credentials_out_of_the_addresses() {
        let url = NatsUrl::parse("nats://app:s3%2Fcret@n1:4222,nats://other:x@n2");
        assert_eq!(url.addrs(), ["nats://n1:4222", "nats://n2"]);
        assert!(matches!(
            &url.credentials,
            Some(NatsCredentials::UserPassword { user, password })
                if user == "app" && password == "s3/cret"
        ));
        let url = NatsUrl::parse("t%40ken@n1");
        assert_eq!(url.addrs(), ["nats://n1"]);
        assert!(matches!(&url.credentials, Some(NatsCredentials::Token(t)) if t == "t@ken"));
    }
}
