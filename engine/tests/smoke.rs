use portcullis_engine::*;

fn rule(json: serde_json::Value) -> Op {
    Op::Create(Spec::from_json(EntityKind::Rule, json).unwrap())
}

#[test]
fn smoke() {
    let engine = Engine::in_memory().unwrap();
    let ops = vec![
        Op::Create(Spec::User(UserSpec::new("alice"))),
        Op::Create(Spec::Node(NodeSpec::new("Prod", "/Default"))),
        Op::Create(Spec::from_json(EntityKind::Asset, serde_json::json!({"name":"web-01","address":"10.0.0.5","platform":"linux","protocols":["ssh/22"],"nodes":["/Default/Prod"],"accounts":[{"username":"root","privileged":true}]})).unwrap()),
        Op::Create(Spec::from_json(EntityKind::Group, serde_json::json!({"name":"ops","members":["alice"]})).unwrap()),
        rule(serde_json::json!({"name":"ops-prod","groups":["ops"],"nodes":["/Default/Prod"],"accounts":["@ALL"],"protocols":["ssh"],"actions":["connect","upload","download"],"starts_at":"2020-01-01T00:00:00Z","expires_at":"2027-01-01T00:00:00Z"})),
    ];
    let outcome = engine.write("test", ops).unwrap();
    let snap = engine.snapshot();
    assert_eq!(snap.revision(), outcome.revision);
    let at: Time = "2026-06-01T00:00:00Z".parse().unwrap();
    let q = Query { user: "alice", asset: "web-01", account: "root", protocol: "ssh", action: Actions::CONNECT, at };
    let d = snap.check(&q).unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.valid_until, Some("2027-01-01T00:00:00Z".parse().unwrap()));
    let e = snap.explain(&Query { action: Actions::DELETE, ..q.clone() }).unwrap();
    println!("{}", serde_json::to_string_pretty(&e).unwrap());
    let estate = snap.estate();
    let reference = Reference::new(&estate, snap.revision());
    assert_eq!(reference.check(&q).unwrap(), d);
}
