//! `baton demo`: seeds people with passwords, a queue and records that a
//! newcomer can log in to and use; running it again adds nothing twice.

use std::process::Command;

use crate::harness::Server;

fn demo(db: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["demo", "--db", db])
        .env("BATON_LOG", "warn")
        .output()
        .expect("run baton demo");
    assert!(
        out.status.success(),
        "baton demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The password `baton demo` printed for `name`.
fn password(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.next().map(str::to_owned))?
        })
        .unwrap_or_else(|| panic!("no password for {name} in:\n{out}"))
}

#[tokio::test]
async fn demo_seeds_what_a_newcomer_logs_in_to_and_runs_twice_safely() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("demo.db").display());
    let first = demo(&db);
    assert!(first.contains("queue `support`: 24 new"), "{first}");
    assert!(
        first.contains("`clients` (stale saves merge field by field): 6 new"),
        "{first}"
    );
    assert!(
        first.contains("`employees` (edit needs a lock): 2 new"),
        "{first}"
    );
    let again = demo(&db);
    assert!(
        again.contains("support`: 0 new") && !again.contains("6 new"),
        "{again}"
    );
    let pw = password(&again, "joe");
    assert_ne!(
        pw,
        password(&first, "joe"),
        "a second run resets the passwords"
    );

    let server = Server::start_url(&db, &[]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("login form token");
    let login = http
        .post(format!("{}/login", server.url))
        .header("cookie", &cookie)
        .form(&[
            ("_csrf", csrf),
            ("name", "joe"),
            ("password", &pw),
            ("next", "/desk/support"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "login refused");
    let session = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("baton_session="))
        .expect("session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let desk = http
        .get(format!("{}/desk/support", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(desk.status(), 200);
    let html = desk.text().await.unwrap();
    assert!(html.contains("24 waiting"), "{html}");
    let record = http
        .get(format!("{}/records/clients/C-1001", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(record.contains("Maria Lopez"), "{record}");
}
