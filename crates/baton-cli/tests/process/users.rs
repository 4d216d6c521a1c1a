//! `baton user` and `baton token list/revoke`: the real binary over a
//! SQLite file, passwords on standard input, checked through the engine.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `baton ARGS --db URL` with `stdin` as standard input.
fn baton(db: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .args(["--db", db])
        .env("BATON_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("baton ran")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn users_get_passwords_from_stdin_and_tokens_are_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("b.db").display());

    ok(&baton(
        &db,
        &["user", "create", "alice", "--role", "operator"],
        "first secret\n",
    ));
    ok(&baton(
        &db,
        &["user", "create", "shop", "--role", "app", "--no-password"],
        "",
    ));
    // A refused password creates nothing.
    let short = baton(
        &db,
        &["user", "create", "bob", "--role", "operator"],
        "short\n",
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"));
    let dup = baton(
        &db,
        &["user", "create", "alice", "--role", "admin"],
        "whatever123\n",
    );
    assert!(!dup.status.success());
    let listed = ok(&baton(&db, &["user", "list"], ""));
    assert_eq!(listed, "alice\toperator\nshop\tapp\n");

    ok(&baton(
        &db,
        &["user", "passwd", "alice"],
        "second secret\r\n",
    ));
    let missing = baton(&db, &["user", "passwd", "nobody"], "second secret\n");
    assert!(!missing.status.success());

    let token = ok(&baton(
        &db,
        &["token", "create", "--name", "shop", "--role", "app"],
        "",
    ));
    let token = token.trim().to_owned();
    let tokens = ok(&baton(&db, &["token", "list", "shop"], ""));
    let lines: Vec<&str> = tokens.lines().collect();
    assert_eq!(lines.len(), 1, "{tokens}");
    let id = lines[0].split('\t').next().unwrap().to_owned();
    assert_eq!(id, baton::identity::token_id(&baton::hash_token(&token)));
    let wrong = baton(&db, &["token", "revoke", "alice", &id], "");
    assert!(!wrong.status.success(), "not alice's token");

    {
        let engine = baton::Engine::open(&db).await.unwrap();
        assert!(
            engine
                .login("alice", "first secret")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            engine
                .login("alice", "second secret")
                .await
                .unwrap()
                .is_some()
        );
        assert!(engine.login("shop", "").await.unwrap().is_none());
        assert!(engine.authenticate(&token).await.unwrap().is_some());
    }
    ok(&baton(&db, &["token", "revoke", "shop", &id], ""));
    assert_eq!(ok(&baton(&db, &["token", "list", "shop"], "")), "");
    let engine = baton::Engine::open(&db).await.unwrap();
    assert!(engine.authenticate(&token).await.unwrap().is_none());
}
