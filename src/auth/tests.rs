//! Tests of users, secrets and sessions.

use super::*;

fn cheap() -> Argon2<'static> {
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

fn auth() -> Auth {
    let spec = format!(
        "alice:reviewer:{},bob:submitter:{}",
        hash_with(&cheap(), "wonderland"),
        hash_with(&cheap(), "builder")
    );
    Auth::new(spec.parse().unwrap(), None, Duration::from_secs(60), false)
}

#[test]
fn users_parse_from_commas_or_lines_despite_the_commas_in_hashes() {
    let hash = hash_with(&cheap(), "x");
    assert!(
        hash.contains(','),
        "PHC parameters are comma-separated: {hash}"
    );
    let users: Users = format!("a:reviewer:{hash},b:submitter:{hash}")
        .parse()
        .unwrap();
    assert_eq!(users.0.len(), 2);
    let users: Users = format!("# team\na:reviewer:{hash}\n\nb:submitter:{hash}\n")
        .parse()
        .unwrap();
    assert_eq!(users.0.len(), 2);
    for bad in [
        String::new(),
        "a:boss:x".into(),
        "a:reviewer:plain-secret".into(),
        format!("a:reviewer:{hash},a:submitter:{hash}"),
    ] {
        assert!(bad.parse::<Users>().is_err(), "{bad:?} is refused");
    }
}

#[test]
fn a_secret_checks_only_against_its_own_user() {
    let auth = auth();
    assert_eq!(
        auth.check("alice", "wonderland").unwrap().role,
        Role::Reviewer
    );
    assert!(auth.check("alice", "builder").is_none());
    assert!(auth.check("carol", "wonderland").is_none());
    assert_eq!(auth.bearer("bob:builder").unwrap().role, Role::Submitter);
    assert!(auth.bearer("bob:wrong").is_none());
    assert!(auth.bearer("bob").is_none());
}

#[test]
fn sessions_are_signed_and_end_when_asked() {
    let auth = auth();
    let alice = auth.check("alice", "wonderland").unwrap();
    let cookie = auth.start_session(alice.clone());
    assert_eq!(auth.session(&cookie), Some(alice));
    let (id, _) = cookie.split_once('.').unwrap();
    assert!(auth.session(&format!("{id}.00")).is_none(), "bad signature");
    assert!(auth.session(id).is_none(), "no signature");
    auth.end_session(&cookie);
    assert!(auth.session(&cookie).is_none(), "signed out");
}
