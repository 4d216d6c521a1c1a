//! `baton demo`: a realistic data set to try Baton with, in the same
//! database a `baton serve` uses. It creates people (two operators, a
//! supervisor, an admin) with passwords, a `support` queue of customer
//! requests, a `clients` collection (stale saves merge field by field) and
//! an `employees` collection that needs a lock to edit — the situations of
//! the user's own documents: two clerks on one queue, Joe and Fred on one
//! client record, HR files edited one at a time.
//!
//! Running it again resets the demo people's passwords and adds nothing
//! twice (requests carry a dedupe key; records are only created when
//! missing).

use baton::{
    CollectionName, ConflictPolicy, Engine, Kind, LockPolicy, NewItem, Precondition, Principal,
    QueueName, RecordKey, RecordWrite, Role, WriteOp,
};
use rand::Rng;
use serde_json::{Value, json};

/// The people of the demo: name, role, what they do.
const PEOPLE: [(&str, Role, &str); 4] = [
    ("joe", Role::Operator, "operator"),
    ("fred", Role::Operator, "operator"),
    ("sam", Role::Supervisor, "supervisor"),
    ("admin", Role::Admin, "admin"),
];

/// A readable random password: 4 groups of 4 lowercase letters and digits.
fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..4)
        .map(|_| {
            (0..4)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

async fn principal(
    engine: &Engine,
    admin: &Principal,
    name: &str,
    role: Role,
) -> anyhow::Result<()> {
    match engine.store().principal(name).await? {
        Some(p) if p.role == role => Ok(()),
        Some(p) => anyhow::bail!("principal {name} exists with role {}, not {role}", p.role),
        None => {
            engine.create_principal(admin, name, role).await?;
            Ok(())
        }
    }
}

/// Customer requests for the `support` queue: kind, priority, payload.
fn requests() -> Vec<(&'static str, i32, Value)> {
    let customers = [
        ("C-1001", "Maria Lopez", "maria.lopez@example.com"),
        ("C-1002", "Kenji Watanabe", "kenji.w@example.com"),
        ("C-1003", "Amara Okafor", "amara.okafor@example.com"),
        ("C-1004", "Lukas Becker", "lukas.becker@example.com"),
        ("C-1005", "Sofia Rossi", "sofia.rossi@example.com"),
        ("C-1006", "Ethan Clarke", "ethan.clarke@example.com"),
    ];
    let asks: [(&str, i32, &str, Value); 8] = [
        (
            "refund",
            5,
            "The blender arrived broken; I would like my money back.",
            json!({"order": "SO-55120", "amount": "89.90 EUR"}),
        ),
        (
            "address-change",
            0,
            "We moved: please send future invoices to our new address.",
            json!({"new_address": {"street": "14 Rue des Lilas", "city": "Lyon", "postal_code": "69003"}}),
        ),
        (
            "complaint",
            3,
            "Third late delivery this month. What is going on?",
            json!({"orders": ["SO-55011", "SO-55087", "SO-55133"]}),
        ),
        (
            "question",
            0,
            "Does the premium plan include weekend support?",
            json!({"plan": "standard"}),
        ),
        (
            "refund",
            2,
            "Charged twice for the same order.",
            json!({"order": "SO-55201", "amount": "24.00 EUR", "charges": 2}),
        ),
        (
            "cancellation",
            1,
            "Please cancel my subscription at the end of the month.",
            json!({"subscription": "SUB-7781"}),
        ),
        (
            "question",
            0,
            "Can I get a copy of last year's invoices?",
            json!({"year": 2025}),
        ),
        (
            "address-change",
            0,
            "Typo in my postcode on the last invoice.",
            json!({"field": "postal_code"}),
        ),
    ];
    let mut out = Vec::new();
    for (i, (kind, priority, message, detail)) in asks.into_iter().enumerate() {
        for round in 0..3 {
            let (id, name, email) = customers[(i + round * 3) % customers.len()];
            let channel = ["email", "phone", "web form"][(i + round) % 3];
            out.push((
                kind,
                priority,
                json!({
                    "customer": {"id": id, "name": name, "email": email},
                    "message": message,
                    "details": detail,
                    "channel": channel,
                }),
            ));
        }
    }
    out
}

fn clients() -> Vec<(&'static str, Value)> {
    vec![
        (
            "C-1001",
            json!({"name": "Maria Lopez", "email": "maria.lopez@example.com", "phone": "+34 612 345 678", "address": {"street": "Calle Mayor 5", "city": "Madrid", "postal_code": "28013", "country": "ES"}, "vip": true, "notes": "Prefers email."}),
        ),
        (
            "C-1002",
            json!({"name": "Kenji Watanabe", "email": "kenji.w@example.com", "phone": "+81 90 1234 5678", "address": {"street": "2-1 Marunouchi", "city": "Tokyo", "postal_code": "100-0005", "country": "JP"}, "vip": false, "notes": ""}),
        ),
        (
            "C-1003",
            json!({"name": "Amara Okafor", "email": "amara.okafor@example.com", "phone": "+234 803 555 0101", "address": {"street": "12 Awolowo Road", "city": "Lagos", "postal_code": "101233", "country": "NG"}, "vip": false, "notes": "Call after 4 pm."}),
        ),
        (
            "C-1004",
            json!({"name": "Lukas Becker", "email": "lukas.becker@example.com", "phone": "+49 30 1234567", "address": {"street": "Torstraße 110", "city": "Berlin", "postal_code": "10119", "country": "DE"}, "vip": true, "notes": ""}),
        ),
        (
            "C-1005",
            json!({"name": "Sofia Rossi", "email": "sofia.rossi@example.com", "phone": "+39 06 555 0199", "address": {"street": "Via del Corso 20", "city": "Roma", "postal_code": "00186", "country": "IT"}, "vip": false, "notes": ""}),
        ),
        (
            "C-1006",
            json!({"name": "Ethan Clarke", "email": "ethan.clarke@example.com", "phone": "+44 20 7946 0958", "address": {"street": "221 Baker Street", "city": "London", "postal_code": "NW1 6XE", "country": "GB"}, "vip": false, "notes": "Account under review."}),
        ),
    ]
}

fn employees() -> Vec<(&'static str, Value)> {
    vec![
        (
            "E-017",
            json!({"name": "Priya Nair", "title": "Accountant", "salary": 58000, "manager": "D. Hughes", "address": {"street": "8 Elm Row", "city": "Leeds", "postal_code": "LS1 4AP"}}),
        ),
        (
            "E-042",
            json!({"name": "Tom Becker", "title": "Warehouse lead", "salary": 47000, "manager": "A. Silva", "address": {"street": "3 Quay Street", "city": "Bristol", "postal_code": "BS1 4DJ"}}),
        ),
    ]
}

async fn records(
    engine: &Engine,
    app: &Principal,
    collection: &CollectionName,
    rows: Vec<(&'static str, Value)>,
) -> anyhow::Result<usize> {
    let mut created = 0;
    for (key, data) in rows {
        let write = RecordWrite::new(
            collection.clone(),
            RecordKey::new(key)?,
            WriteOp::Put(data),
            Precondition::Absent,
            None,
        )?;
        match engine.write_record(app, write).await {
            Ok(_) => created += 1,
            // Already there from an earlier run: left as people edited it.
            Err(baton::Error::PreconditionFailed(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

/// Seeds the demo data into `engine`'s database and prints how to use it.
pub(crate) async fn run(engine: &Engine, url: &str) -> anyhow::Result<()> {
    engine.ensure_admin().await?;
    let admin = engine
        .store()
        .principal("admin")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no principal `admin`; is this a Baton database?"))?;
    anyhow::ensure!(
        admin.role == Role::Admin,
        "principal `admin` is not an admin"
    );
    principal(engine, &admin, "crm", Role::App).await?;
    let app = engine
        .store()
        .principal("crm")
        .await?
        .ok_or_else(|| anyhow::anyhow!("principal crm vanished"))?;

    let mut logins = Vec::new();
    for (name, role, what) in PEOPLE {
        principal(engine, &admin, name, role).await?;
        let pw = password();
        engine.set_password(&admin, name, &pw).await?;
        logins.push((name, what, pw));
    }

    let queue = QueueName::new("support")?;
    engine
        .update_queue_config(&admin, &queue, |mut c| {
            c.outcomes = vec![
                "resolved".into(),
                "refunded".into(),
                "needs-callback".into(),
                "escalated".into(),
            ];
            c.escalation_outcome = None;
            c
        })
        .await?;
    let mut enqueued = 0;
    for (i, (kind, priority, payload)) in requests().into_iter().enumerate() {
        let item = NewItem::new(
            queue.clone(),
            Kind::new(kind)?,
            payload,
            priority,
            0,
            Some(format!("demo-{i}")),
        )?;
        if engine.enqueue(&app, item).await?.1 {
            enqueued += 1;
        }
    }

    let clients_c = CollectionName::new("clients")?;
    engine
        .update_collection_config(&admin, &clients_c, |mut c| {
            c.conflict_policy = ConflictPolicy::Merge;
            c.lock_policy = LockPolicy::None;
            c
        })
        .await?;
    let n_clients = records(engine, &app, &clients_c, clients()).await?;
    // Created before the lock policy applies (creating under it would
    // need the lock too); on a later run, only if one is missing.
    let employees_c = CollectionName::new("employees")?;
    let mut missing = false;
    for (key, _) in employees() {
        missing |= engine
            .store()
            .record_head(&employees_c, &RecordKey::new(key)?)
            .await?
            .is_none();
    }
    let mut n_employees = 0;
    if missing {
        engine
            .update_collection_config(&admin, &employees_c, |mut c| {
                c.lock_policy = LockPolicy::None;
                c
            })
            .await?;
        n_employees = records(engine, &app, &employees_c, employees()).await?;
    }
    engine
        .update_collection_config(&admin, &employees_c, |mut c| {
            c.conflict_policy = ConflictPolicy::Reject;
            c.lock_policy = LockPolicy::Write;
            c
        })
        .await?;

    println!("Demo data is in {url}:");
    println!("  queue `support`: {enqueued} new customer requests");
    println!("  collection `clients` (stale saves merge field by field): {n_clients} new records");
    println!("  collection `employees` (edit needs a lock): {n_employees} new records");
    println!();
    println!("Log in at http://127.0.0.1:8080/login (start the server with `baton serve`) as:");
    for (name, what, pw) in &logins {
        println!("  {name:<6} {pw}   ({what})");
    }
    println!();
    println!("Try it: open two browsers (or a private window), log in as joe and fred,");
    println!("  - both open http://127.0.0.1:8080/desk/support and claim: never the same request;");
    println!(
        "  - both open http://127.0.0.1:8080/records/clients/C-1001, change different fields, save;"
    );
    println!("  - both open http://127.0.0.1:8080/records/employees/E-017 and click Edit;");
    println!("  - log in as sam for http://127.0.0.1:8080/admin.");
    Ok(())
}
