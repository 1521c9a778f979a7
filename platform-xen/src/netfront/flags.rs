//! [`NetFlags`]: the network flags of a Xen guest's command line, taken
//! out of the application's arguments before the application reads the
//! rest.
//!
//! ```text
//! [--vif ID] [--ipv4 ADDR/PREFIX [--ipv4-gateway ADDR]] APP-ARGS...
//! ```
//!
//! They mean what the virtio platform's flags of the same names mean:
//! `--ipv4` gives the stack its address (without it, the application asks
//! DHCP), `--vif` picks `device/vif/ID` (default: the first listed). The
//! flags may appear anywhere among the application's arguments; each at
//! most once.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use mirage_types::ip::Ipv4Cidr;

/// The network flags, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetFlags {
    /// `--vif`: the vif's id.
    pub vif: Option<String>,
    /// `--ipv4`.
    pub ipv4: Option<Ipv4Cidr>,
    /// `--ipv4-gateway`.
    pub ipv4_gateway: Option<Ipv4Addr>,
}

/// A malformed network flag; the message names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetFlagError(pub String);

impl fmt::Display for NetFlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (usage: [--vif ID] [--ipv4 ADDR/PREFIX [--ipv4-gateway ADDR]] APP-ARGS...)", self.0)
    }
}

impl core::error::Error for NetFlagError {}

impl NetFlags {
    /// Takes the network flags out of `args`; returns them and the other
    /// arguments, in order. Errors: a flag without its value, a malformed
    /// value, a flag given twice, a gateway without an address.
    pub fn take(args: &[String]) -> Result<(NetFlags, Vec<String>), NetFlagError> {
        let mut flags = NetFlags::default();
        let mut rest = Vec::new();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let flag = word.as_str();
            if !matches!(flag, "--vif" | "--ipv4" | "--ipv4-gateway") {
                rest.push(word.clone());
                continue;
            }
            let value = words.next().ok_or_else(|| NetFlagError(format!("{flag} needs a value")))?;
            let twice = || NetFlagError(format!("{flag} given twice"));
            match flag {
                "--vif" => {
                    if flags.vif.is_some() {
                        return Err(twice());
                    }
                    if value.is_empty() || value.contains('/') {
                        return Err(NetFlagError(format!("--vif {value:?}: expected a device id like 0")));
                    }
                    flags.vif = Some(value.clone());
                }
                "--ipv4" => {
                    if flags.ipv4.is_some() {
                        return Err(twice());
                    }
                    let cidr = value.parse().map_err(|_| {
                        NetFlagError(format!("--ipv4 {value:?}: expected ADDR/PREFIX like 10.0.0.2/24"))
                    })?;
                    flags.ipv4 = Some(cidr);
                }
                _ => {
                    if flags.ipv4_gateway.is_some() {
                        return Err(twice());
                    }
                    let gateway = value
                        .parse()
                        .map_err(|_| NetFlagError(format!("--ipv4-gateway {value:?}: expected an IPv4 address")))?;
                    flags.ipv4_gateway = Some(gateway);
                }
            }
        }
        if flags.ipv4_gateway.is_some() && flags.ipv4.is_none() {
            return Err(NetFlagError(String::from("--ipv4-gateway needs --ipv4")));
        }
        Ok((flags, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(ToString::to_string).collect()
    }

    #[test]
    fn flags_are_taken_out_wherever_they_are_and_the_rest_kept_in_order() {
        let (flags, rest) =
            NetFlags::take(&words("--port 80 --ipv4 10.0.0.2/24 -c 3 --vif 1 --ipv4-gateway 10.0.0.1 10.0.0.1"))
                .unwrap();
        assert_eq!(flags.ipv4, Some("10.0.0.2/24".parse().unwrap()));
        assert_eq!(flags.ipv4_gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(flags.vif.as_deref(), Some("1"));
        assert_eq!(rest, words("--port 80 -c 3 10.0.0.1"));
        assert_eq!(NetFlags::take(&[]).unwrap(), (NetFlags::default(), Vec::new()));
    }

    #[test]
    fn malformed_flags_are_errors_that_name_them() {
        for (line, needle) in [
            ("--ipv4", "--ipv4 needs a value"),
            ("--ipv4 10.0.0.2", "--ipv4 \"10.0.0.2\""),
            ("--ipv4 10.0.0.2/33", "ADDR/PREFIX"),
            ("--ipv4 10.0.0.2/24 --ipv4 10.0.0.3/24", "--ipv4 given twice"),
            ("--ipv4-gateway 10.0.0.1", "needs --ipv4"),
            ("--ipv4 10.0.0.2/24 --ipv4-gateway x", "--ipv4-gateway \"x\""),
            ("--vif a/b", "--vif \"a/b\""),
            ("--vif 0 --vif 1", "--vif given twice"),
        ] {
            let e = NetFlags::take(&words(line)).unwrap_err();
            assert!(e.to_string().contains(needle), "{line}: {e}");
        }
    }
}
