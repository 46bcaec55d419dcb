//! The test OpenID Provider ([`firedoor_testkit::oidc`]) for scripts — the install
//! test (`scripts/install-test.sh`) signs a new user in with SSO through the installed
//! packages with it:
//!
//! - `sso_idp serve NAME:PASSWORD:GROUP[,GROUP…]…` starts the real `oidc-provider`
//!   with these users, prints its issuer URL on one line, and keeps it running until
//!   stdin closes;
//! - `sso_idp browse URL` is the person's browser (`$BROWSER` for `xdg-open`): it
//!   opens the IdP's sign-in page, fills in the login form as `$IDP_USER` /
//!   `$IDP_PASSWORD` and the consent form, and follows the IdP back to the app.
#![allow(clippy::unwrap_used)]

use firedoor_testkit::oidc::{self, OidcProvider, OidcUser};
use std::io::Read;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let specs: Vec<(String, String, Vec<String>)> = args[1..]
                .iter()
                .map(|s| {
                    let mut p = s.splitn(3, ':');
                    let (n, pw, g) = (p.next(), p.next(), p.next());
                    match (n, pw, g) {
                        (Some(n), Some(pw), Some(g)) => (
                            n.to_string(),
                            pw.to_string(),
                            g.split(',').map(str::to_string).collect(),
                        ),
                        _ => usage(),
                    }
                })
                .collect();
            let users: Vec<OidcUser> = specs
                .iter()
                .map(|(n, pw, g)| {
                    let g: Vec<&str> = g.iter().map(String::as_str).collect();
                    OidcUser::new(n, pw, &g)
                })
                .collect();
            let idp = OidcProvider::start(&users);
            println!("{}", idp.issuer());
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
            drop(idp);
        }
        Some("browse") if args.len() == 2 => {
            let user = std::env::var("IDP_USER").unwrap_or_else(|_| usage());
            let password = std::env::var("IDP_PASSWORD").unwrap_or_else(|_| usage());
            if let Err(e) = oidc::login(&args[1], &user, &password).await {
                eprintln!("sso_idp browse: {e}");
                std::process::exit(1);
            }
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: sso_idp serve NAME:PASSWORD:GROUP[,GROUP...]...\n       IDP_USER=.. IDP_PASSWORD=.. sso_idp browse URL"
    );
    std::process::exit(2)
}
