//! Mailbox providers: sites (a destination's set of MX hosts) are grouped by MX host name suffix, so all
//! the domains a provider hosts share its shaping limits and reply rules. The built-in list below can be
//! extended or replaced by name with `[[provider]]`; see [`crate::Config::providers`].

use crate::shaping::ProviderConfig;

/// The provider name of sites whose MX hosts match no provider. Reserved: `[[provider]]` may not use it,
/// but `[[shaping.provider]]` may, to set the limits of those sites.
pub const OTHER_PROVIDER: &str = "other";

/// Built-in providers: (name, MX host suffixes). A suffix starts with a dot and matches the host names
/// ending in it at a label boundary (`.google.com` matches `aspmx.l.google.com`); when suffixes of
/// several providers match, the longest wins (the matching itself is `policy::shaping::ProviderTable`'s).
/// Each entry cites where its MX host names are documented.
pub const BUILTIN_PROVIDERS: &[(&str, &[&str])] = &[
    // Gmail and Google Workspace: aspmx.l.google.com, alt1..4.aspmx.l.google.com, aspmx2/3.googlemail.com,
    // smtp.google.com (https://webhostingpeople.net/knowledge-base/gmail-mx-record-changes,
    // https://corspot.com/2026/02/25/new-mx-records-for-using-gmail-with-google-workspace/); KumoMTA's
    // shaping.toml groups both suffixes as one provider (KumoCorp/kumomta assets/policy-extras/shaping.toml).
    ("google", &[".google.com", ".googlemail.com"]),
    // Yahoo, AOL, Verizon: mta5.am0.yahoodns.net, mx-aol.mail.gm0.yahoodns.net, mx-biz.mail.am0.yahoodns.net
    // (https://suped.com/email-deliverability/answers/what-are-the-current-yahoo-mail-server-names-and-infrastructure;
    // KumoMTA policy-extras/shaping.toml, after https://senders.yahooinc.com/best-practices).
    ("yahoo", &[".yahoodns.net"]),
    // Outlook.com/Hotmail (*.olc.protection.outlook.com), Microsoft 365 (DOMAIN.mail.protection.outlook.com,
    // https://mxrecordchecker.com/resources/microsoft-365-mx-records) and its DNSSEC/DANE zone
    // (DOMAIN.RANDOM.mx.microsoft, https://c7solutions.com/2024/02/what-is-mx-microsoft).
    (
        "microsoft",
        &[".outlook.com", ".mail.protection.outlook.com", ".mx.microsoft"],
    ),
    // iCloud Mail and iCloud+ custom domains: mx01/mx02.mail.icloud.com (KumoMTA policy-extras/shaping.toml,
    // after https://support.apple.com/en-us/102322).
    ("apple", &[".icloud.com"]),
    // Zoho Mail: mx/mx2/mx3.zoho.com and the regional zoho.eu, zoho.in, zoho.com.au, zoho.jp
    // (https://mxrecordchecker.com/resources/zoho-mx-records,
    // https://www.zoho.com/mail/help/adminconsole/configure-email-delivery.html).
    (
        "zoho",
        &[".zoho.com", ".zoho.eu", ".zoho.in", ".zoho.com.au", ".zoho.jp"],
    ),
    // Yandex 360 / Yandex Mail for domains: mx.yandex.net (https://yandex.com.tr/support/kurum/set-mail/mx.html,
    // https://yandex.com/support/yandex-360/business/admin/en/mail/configuration).
    ("yandex", &[".yandex.net"]),
    // Mail.ru and VK WorkSpace (biz.mail.ru) domains: mxs.mail.ru, emx.mail.ru (VK WorkSpace's DNS setup
    // publishes `MX 10 emx.mail.ru.`; https://biz.mail.ru/docs/saas/FAQ/mail/).
    ("mailru", &[".mail.ru"]),
    // GMX and web.de (United Internet): mx00.gmx.net, mx-ha03.web.de (KumoMTA community/shaping.toml,
    // provider "gmx.net_web.de"; https://postmaster.gmx.net/de/faq).
    ("gmx", &[".gmx.net", ".web.de"]),
    // Comcast/Xfinity: mx1.comcast.net, mx2.comcast.net, mx1a1.comcast.net
    // (http://www.avolio.com/weblog/2008/06/28/, https://postmaster.comcast.net/).
    ("comcast", &[".comcast.net"]),
    // AT&T (att.net, sbcglobal.net, bellsouth.net): al-ip4-mx-vip1.prodigy.net, ff-ip4-mx-vip1.prodigy.net
    // (InMotion Hosting's telcheck block checker; http://www.att.com/esupport/postmaster/).
    ("att", &[".prodigy.net"]),
    // Fastmail: in1-smtp.messagingengine.com, in2-smtp.messagingengine.com
    // (https://mailermonk.com/guides/spf/fastmail, https://www.fastmail.help/hc/en-us/articles/360060591153).
    ("fastmail", &[".messagingengine.com"]),
    // Proton Mail: mail.protonmail.ch, mailsec.protonmail.ch
    // (https://mxrecordchecker.com/resources/protonmail-mx-records, https://proton.me/support/custom-domain).
    ("proton", &[".protonmail.ch"]),
    // Proofpoint: enterprise mx0a-NNNNNNNN.pphosted.com (seen in Received fields of mail from Proofpoint
    // customers) and Proofpoint Essentials mx1-us1.ppe-hosted.com (https://github.com/pect0ral/mail_recon).
    ("proofpoint", &[".pphosted.com", ".ppe-hosted.com"]),
    // Mimecast: REGION-smtp-inbound-N.mimecast.com and regional zones (KumoMTA policy-extras/shaping.toml,
    // "provided directly by Mimecast"; https://www.spamresource.com/2024/02/isp-deliverability-guide-mimecast.html).
    (
        "mimecast",
        &[".mimecast.com", ".mimecast.co.za", ".mimecast-offshore.com"],
    ),
    // Barracuda Email Gateway Defense: CUSTOMER.ess.barracudanetworks.com
    // (https://www.captaindns.com/en/blog/barracuda-secure-email-gateway; KumoMTA community/shaping.toml).
    ("barracuda", &[".barracudanetworks.com"]),
];

/// The built-in providers as config values.
pub fn builtin_providers() -> Vec<ProviderConfig> {
    BUILTIN_PROVIDERS
        .iter()
        .map(|(name, suffixes)| ProviderConfig {
            name: (*name).to_owned(),
            mx_suffixes: suffixes.iter().map(|suffix| (*suffix).to_owned()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::check_domain;

    #[test]
    fn builtin_list_is_well_formed() {
        let mut names = std::collections::HashSet::new();
        let mut suffixes = std::collections::HashSet::new();
        for (name, list) in BUILTIN_PROVIDERS {
            assert!(names.insert(name), "{name} twice");
            assert_ne!(*name, OTHER_PROVIDER);
            assert!(!list.is_empty(), "{name}");
            for suffix in *list {
                assert!(suffixes.insert(suffix), "{suffix} twice");
                assert_eq!(suffix.to_ascii_lowercase(), *suffix);
                let bare = suffix.strip_prefix('.').expect("leading dot");
                assert_eq!(check_domain(bare), Ok(()), "{suffix}");
            }
        }
        for name in ["google", "yahoo", "microsoft", "apple"] {
            assert!(names.contains(&name), "{name}");
        }
    }
}
