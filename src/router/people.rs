//! People and what they may do with incidents.
//!
//! A request comes from a person in one of two ways: from an authenticating proxy the config
//! trusts (its address is listed; it sets the user and groups headers, as oauth2-proxy does), or
//! with HTTP Basic credentials checked against a users file of bcrypt hashes (`htpasswd -B`
//! writes one). Proxy headers from any other address are ignored, so nobody can claim a name by
//! setting a header. Viewers read incidents; a team's responders act on that team's incidents.
//!
//! [`People::identify`] and the permission checks take the request's parts and decide; nothing
//! here does I/O. A password is checked once per distinct password (bcrypt is slow on purpose);
//! later requests with the same one are matched by its SHA-256.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The longest user or group name taken from a proxy header.
pub const NAME_MAX: usize = 256;

/// An address or a network (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `address` or `address/prefix`.
    pub fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address.parse::<IpAddr>().ok()?, prefix.parse().ok()?),
            None => {
                let address: IpAddr = text.parse().ok()?;
                (address, if address.is_ipv4() { 32 } else { 128 })
            }
        };
        let bits = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Network { address, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let (network, address, bits) = match (self.address, canonical(address)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = bits - u32::from(self.prefix);
        network >> shift == address >> shift
    }
}

/// An IPv4 client seen on an IPv6 socket (`::ffff:10.0.0.1`) as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The authenticating proxy the router trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Addresses the proxy connects from.
    pub trusted: Vec<Network>,
    /// Header holding the person's name (lower case).
    pub user_header: String,
    /// Header holding their groups, separated by commas (lower case).
    pub groups_header: String,
}

/// Who a permission is given to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Person(String),
    /// `group:NAME`: everybody the proxy says is in the group.
    Group(String),
    /// `*`: everybody who signed in.
    Everybody,
}

impl Principal {
    pub fn parse(text: &str) -> Principal {
        match text {
            "*" => Principal::Everybody,
            _ => match text.strip_prefix("group:") {
                Some(group) => Principal::Group(group.to_string()),
                None => Principal::Person(text.to_string()),
            },
        }
    }

    fn covers(&self, person: &Person) -> bool {
        match self {
            Principal::Everybody => true,
            Principal::Person(name) => *name == person.name,
            Principal::Group(group) => person.groups.iter().any(|g| g == group),
        }
    }
}

/// A person who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub groups: Vec<String>,
}

/// Why a request has no person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "sign in: send HTTP Basic credentials of the users file, or come through the authenticating proxy"
    )]
    Missing,
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("the proxy's user header is not a name (empty, too long or with control characters)")]
    BadProxyUser,
}

/// `people`: how persons sign in and what each may do.
#[derive(Debug, Default)]
pub struct People {
    /// From the users file: name to bcrypt hash.
    pub users: BTreeMap<String, String>,
    pub proxy: Option<ProxyConfig>,
    /// Who may read incidents; empty: everybody who signed in.
    pub viewers: Vec<Principal>,
    /// By team: who may act on its incidents.
    pub responders: BTreeMap<String, Vec<Principal>>,
    /// Name to the SHA-256 of the password last checked good.
    checked: Mutex<HashMap<String, [u8; 32]>>,
}

impl Clone for People {
    fn clone(&self) -> Self {
        People {
            users: self.users.clone(),
            proxy: self.proxy.clone(),
            viewers: self.viewers.clone(),
            responders: self.responders.clone(),
            checked: Mutex::new(HashMap::new()),
        }
    }
}

impl People {
    pub fn new(
        users: BTreeMap<String, String>,
        proxy: Option<ProxyConfig>,
        viewers: Vec<Principal>,
        responders: BTreeMap<String, Vec<Principal>>,
    ) -> People {
        People {
            users,
            proxy,
            viewers,
            responders,
            checked: Mutex::new(HashMap::new()),
        }
    }

    /// Whether persons can sign in at all (a users file or a proxy is configured).
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || self.proxy.is_some()
    }

    /// The person a request comes from: `peer` is the connection's address, `header` reads a
    /// request header (lower-case name), `basic` is the decoded `user:password` of an HTTP
    /// Basic `Authorization`, if any.
    pub fn identify(
        &self,
        peer: IpAddr,
        header: impl Fn(&str) -> Option<String>,
        basic: Option<(&str, &str)>,
    ) -> Result<Person, AuthError> {
        if let Some(proxy) = &self.proxy
            && proxy.trusted.iter().any(|n| n.contains(peer))
            && let Some(user) = header(&proxy.user_header)
        {
            let user = user.trim();
            if !is_name(user) {
                return Err(AuthError::BadProxyUser);
            }
            let groups = header(&proxy.groups_header)
                .map(|text| {
                    text.split(',')
                        .map(str::trim)
                        .filter(|g| is_name(g))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Person {
                name: user.to_string(),
                groups,
            });
        }
        let (name, password) = basic.ok_or(AuthError::Missing)?;
        let hash = self.users.get(name).ok_or(AuthError::BadCredentials)?;
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let known = self
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|good| bool::from(good.ct_eq(&digest)));
        if !known {
            if !bcrypt::verify(password, hash).unwrap_or(false) {
                return Err(AuthError::BadCredentials);
            }
            self.checked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string(), digest);
        }
        Ok(Person {
            name: name.to_string(),
            groups: Vec::new(),
        })
    }

    pub fn may_view(&self, person: &Person) -> bool {
        self.viewers.is_empty()
            || self.viewers.iter().any(|p| p.covers(person))
            || self.responders.values().flatten().any(|p| p.covers(person))
    }

    pub fn may_respond(&self, person: &Person, team: &str) -> bool {
        self.responders
            .get(team)
            .is_some_and(|principals| principals.iter().any(|p| p.covers(person)))
    }
}

/// A name from a header or a form: not empty, at most [`NAME_MAX`] bytes, no control characters.
pub fn is_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= NAME_MAX && !text.chars().any(char::is_control)
}

/// A users file (`name:hash` lines, `#` comments): the users, or the line and reason of the
/// first line that is not one.
pub fn parse_users(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut users = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            return Err((index + 1, "not `name:hash`".into()));
        };
        if !is_name(name) {
            return Err((index + 1, "the user name is empty or too long".into()));
        }
        if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
            || hash.len() != 60
        {
            return Err((
                index + 1,
                format!("the hash of `{name}` is not bcrypt (`$2y$...`, 60 characters)"),
            ));
        }
        if users.insert(name.to_string(), hash.to_string()).is_some() {
            return Err((index + 1, format!("`{name}` is listed twice")));
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people() -> People {
        let hash = bcrypt::hash_with_result("s3cret", 4)
            .expect("hash")
            .format_for_version(bcrypt::Version::TwoY);
        People::new(
            BTreeMap::from([("dana".to_string(), hash)]),
            Some(ProxyConfig {
                trusted: vec![Network::parse("10.1.0.0/16").expect("network")],
                user_header: "x-forwarded-user".into(),
                groups_header: "x-forwarded-groups".into(),
            }),
            vec![Principal::parse("group:sre")],
            BTreeMap::from([(
                "payments".to_string(),
                vec![Principal::parse("dana"), Principal::parse("group:payments")],
            )]),
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_trusted_proxy_names_the_person_and_nobody_else_can() {
        let p = people();
        let proxy: IpAddr = "10.1.2.3".parse().expect("address");
        let outsider: IpAddr = "192.0.2.7".parse().expect("address");
        let claim = headers(&[
            ("x-forwarded-user", "erin"),
            ("x-forwarded-groups", "payments, sre"),
        ]);
        assert_eq!(
            p.identify(proxy, &claim, None),
            Ok(Person {
                name: "erin".into(),
                groups: vec!["payments".into(), "sre".into()]
            })
        );
        assert_eq!(
            p.identify("::ffff:10.1.9.9".parse().expect("address"), &claim, None)
                .map(|person| person.name),
            Ok("erin".to_string()),
            "an IPv4 proxy seen on an IPv6 socket"
        );
        assert_eq!(
            p.identify(outsider, &claim, None),
            Err(AuthError::Missing),
            "headers from elsewhere are ignored"
        );
        assert_eq!(
            p.identify(proxy, headers(&[("x-forwarded-user", "a\nb")]), None),
            Err(AuthError::BadProxyUser)
        );
    }

    #[test]
    fn a_users_file_password_signs_in_and_a_wrong_one_does_not() {
        let p = people();
        let anywhere: IpAddr = "192.0.2.7".parse().expect("address");
        let none = headers(&[]);
        assert_eq!(
            p.identify(anywhere, &none, Some(("dana", "s3cret")))
                .map(|person| person.name),
            Ok("dana".to_string())
        );
        // Checked once; the same password again is matched by its digest, another is refused.
        assert!(
            p.identify(anywhere, &none, Some(("dana", "s3cret")))
                .is_ok()
        );
        assert_eq!(
            p.identify(anywhere, &none, Some(("dana", "guess"))),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            p.identify(anywhere, &none, Some(("nobody", "s3cret"))),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(p.identify(anywhere, &none, None), Err(AuthError::Missing));
    }

    #[test]
    fn responders_act_on_their_teams_incidents_and_viewers_only_read() {
        let p = people();
        let person = |name: &str, groups: &[&str]| Person {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let dana = person("dana", &[]);
        let viewer = person("vic", &["sre"]);
        let stranger = person("sam", &["marketing"]);
        let member = person("pat", &["payments"]);
        assert!(p.may_respond(&dana, "payments") && p.may_view(&dana));
        assert!(p.may_respond(&member, "payments"));
        assert!(!p.may_respond(&dana, "search"));
        assert!(p.may_view(&viewer) && !p.may_respond(&viewer, "payments"));
        assert!(!p.may_view(&stranger) && !p.may_respond(&stranger, "payments"));
    }

    #[test]
    fn networks_and_users_files_parse_or_say_why_not() {
        let lan = Network::parse("10.0.0.0/8").expect("network");
        assert!(lan.contains("10.200.1.1".parse().expect("address")));
        assert!(!lan.contains("11.0.0.1".parse().expect("address")));
        assert!(!lan.contains("::1".parse().expect("address")));
        assert!(
            Network::parse("::1")
                .expect("host")
                .contains("::1".parse().expect("address"))
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .expect("all")
                .contains("8.8.8.8".parse().expect("address"))
        );
        assert_eq!(Network::parse("10.0.0.0/33"), None);
        assert_eq!(Network::parse("ten"), None);
        let hash = "$2y$04$abcdefghijklmnopqrstuuJ0Vs6rVl6i0XWZ2JZy3LmCq6n5v3pJm";
        assert_eq!(hash.len(), 60);
        let users = parse_users(&format!("# team payments\ndana:{hash}\n\n")).expect("users");
        assert_eq!(users.keys().collect::<Vec<_>>(), ["dana"]);
        assert_eq!(
            parse_users("dana:plaintext\n"),
            Err((
                1,
                "the hash of `dana` is not bcrypt (`$2y$...`, 60 characters)".into()
            ))
        );
        assert_eq!(
            parse_users(&format!("dana:{hash}\ndana:{hash}\n")),
            Err((2, "`dana` is listed twice".into()))
        );
        assert_eq!(parse_users("dana\n"), Err((1, "not `name:hash`".into())));
    }
}
