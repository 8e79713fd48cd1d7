//! StartTLS and LDAPS with a certificate a test CA signed, and password binds refused
//! in the clear when the server has TLS.

use crate::support::{BASE, Directory, PASSWORD, user_dn};

#[test]
fn starttls_and_ldaps_carry_binds_and_searches() {
    let directory = Directory::start_with(|settings| settings.plain_binds = false, true);
    // -ZZ: StartTLS, and fail unless it succeeds (the CA comes from LDAPTLS_CACERT).
    let run = directory
        .run(
            "ldapwhoami",
            &["-ZZ", "-x", "-D", &user_dn("alice"), "-w", PASSWORD],
        )
        .ok();
    assert_eq!(run.stdout.trim(), format!("dn:{}", user_dn("alice")));
    let run = directory
        .run(
            "ldapsearch",
            &[
                "-ZZ",
                "-x",
                "-D",
                &user_dn("alice"),
                "-w",
                PASSWORD,
                "-b",
                BASE,
                "(uid=bob)",
                "uid",
            ],
        )
        .ok();
    assert_eq!(run.values("uid"), vec!["bob"]);
    let ldaps = format!("ldaps://127.0.0.1:{}", directory.ldaps_port.unwrap());
    let run = directory
        .run_at(
            &ldaps,
            "ldapwhoami",
            &["-x", "-D", &user_dn("bob"), "-w", PASSWORD],
        )
        .ok();
    assert_eq!(run.stdout.trim(), format!("dn:{}", user_dn("bob")));
    // In the clear, a password bind is refused: 13 confidentialityRequired.
    let run = directory.run(
        "ldapwhoami",
        &["-x", "-D", &user_dn("alice"), "-w", PASSWORD],
    );
    assert_eq!(run.code, 13, "{run:?}");
    // The root DSE offers StartTLS.
    let run = directory
        .run(
            "ldapsearch",
            &["-x", "-b", "", "-s", "base", "supportedExtension"],
        )
        .ok();
    assert!(
        run.values("supportedExtension")
            .contains(&"1.3.6.1.4.1.1466.20037".to_owned())
    );
}

#[test]
fn starttls_without_a_certificate_is_refused_and_the_connection_goes_on() {
    let directory = Directory::start(|_| {});
    // -Z (one Z): try StartTLS, carry on in the clear when it is refused.
    let run = directory
        .run(
            "ldapwhoami",
            &["-Z", "-x", "-D", &user_dn("alice"), "-w", PASSWORD],
        )
        .ok();
    assert_eq!(run.stdout.trim(), format!("dn:{}", user_dn("alice")));
    let run = directory.run(
        "ldapwhoami",
        &["-ZZ", "-x", "-D", &user_dn("alice"), "-w", PASSWORD],
    );
    assert_ne!(run.code, 0, "{run:?}");
}
