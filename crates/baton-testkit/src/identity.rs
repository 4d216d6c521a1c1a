//! Principals and their tokens: creation, uniqueness of names, lookup by
//! token hash, listing.

use baton::hash_token;
use baton_core::{Error, Role};

use crate::TestStore;
use crate::harness::Harness;

/// An admin creates a principal; its token authenticates as exactly that
/// principal, and the store finds it by name.
pub async fn created_principal_authenticates_by_token(db: TestStore) {
    let h = Harness::new(db).await;
    let (dave, token) = h
        .engine
        .create_principal(&h.admin, "dave@desk-3", Role::Operator)
        .await
        .unwrap();
    assert_eq!(dave.name, "dave@desk-3");
    assert_eq!(dave.role, Role::Operator);
    assert!(token.starts_with("baton_"));
    assert_eq!(
        h.engine.authenticate(&token).await.unwrap(),
        Some(dave.clone())
    );
    assert_eq!(
        h.store().principal("dave@desk-3").await.unwrap(),
        Some(dave.clone())
    );
    assert_eq!(
        h.store()
            .principal_by_token(&hash_token(&token))
            .await
            .unwrap(),
        Some(dave.clone())
    );
    // A second token for the same principal works alongside the first.
    h.store()
        .add_token(dave.id, &hash_token("baton_second"), h.now())
        .await
        .unwrap();
    assert_eq!(
        h.engine.authenticate("baton_second").await.unwrap(),
        Some(dave.clone())
    );
    assert_eq!(h.engine.authenticate(&token).await.unwrap(), Some(dave));
    // Every role round-trips.
    for (name, role) in [
        ("r-admin", Role::Admin),
        ("r-sup", Role::Supervisor),
        ("r-op", Role::Operator),
        ("r-app", Role::App),
    ] {
        let p = h
            .store()
            .create_principal(name, role, h.now())
            .await
            .unwrap();
        assert_eq!(p.role, role);
        assert_eq!(h.store().principal(name).await.unwrap(), Some(p));
    }
}

/// A name can be taken once: the second creation is `AlreadyExists`,
/// through the engine and the store, and changes nothing.
pub async fn duplicate_principal_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    let before = h.store().principals().await.unwrap();
    assert_err!(
        h.engine
            .create_principal(&h.admin, "alice", Role::Admin)
            .await,
        Error::AlreadyExists(_)
    );
    assert_err!(
        h.store()
            .create_principal("alice", Role::Supervisor, h.now())
            .await,
        Error::AlreadyExists(_)
    );
    assert_eq!(h.store().principals().await.unwrap(), before);
    assert_eq!(
        h.store().principal("alice").await.unwrap(),
        Some(h.alice.clone())
    );
}

/// A token nobody was given authenticates nobody; neither does an empty
/// one or a near miss of a real one.
pub async fn unknown_token_authenticates_nobody(db: TestStore) {
    let h = Harness::new(db).await;
    let (_, token) = h
        .engine
        .create_principal(&h.admin, "erin", Role::App)
        .await
        .unwrap();
    assert_eq!(h.engine.authenticate("baton_nope").await.unwrap(), None);
    assert_eq!(h.engine.authenticate("").await.unwrap(), None);
    let mut near = token.clone();
    near.pop();
    assert_eq!(h.engine.authenticate(&near).await.unwrap(), None);
    assert_eq!(h.store().principal("nobody").await.unwrap(), None);
}

/// The listing has every principal once, ordered by name, with ids and
/// roles as created.
pub async fn principals_are_listed_by_name(db: TestStore) {
    let h = Harness::new(db).await;
    let (zed, _) = h
        .engine
        .create_principal(&h.admin, "zed", Role::Supervisor)
        .await
        .unwrap();
    let (aaron, _) = h
        .engine
        .create_principal(&h.admin, "aaron", Role::App)
        .await
        .unwrap();
    let listed = h.engine.principals(&h.admin).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "aaron",
            "admin",
            "alice",
            "app",
            "bob",
            "carol",
            "supervisor",
            "zed"
        ]
    );
    assert!(listed.contains(&zed) && listed.contains(&aaron));
    assert!(listed.contains(&h.alice) && listed.contains(&h.supervisor));
    let mut ids: Vec<i64> = listed.iter().map(|p| p.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), listed.len(), "ids are unique");
}

/// Bootstrapping an existing principal with the same role keeps it and
/// adds a token (old tokens still work); with another role it is refused.
pub async fn bootstrap_principal_is_idempotent(db: TestStore) {
    let h = Harness::new(db).await;
    let (first, t1) = h
        .engine
        .bootstrap_principal("ops", Role::Operator)
        .await
        .unwrap();
    let (second, t2) = h
        .engine
        .bootstrap_principal("ops", Role::Operator)
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_ne!(t1, t2);
    assert_eq!(
        h.engine.authenticate(&t1).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        h.engine.authenticate(&t2).await.unwrap(),
        Some(first.clone())
    );
    assert_err!(
        h.engine.bootstrap_principal("ops", Role::Admin).await,
        Error::AlreadyExists(_)
    );
    assert_eq!(h.store().principal("ops").await.unwrap(), Some(first));
    assert_err!(
        h.engine.bootstrap_principal("bad name", Role::Admin).await,
        Error::Invalid { .. }
    );
}
