//! Policy decision cost at 10, 100 and 500 rules, worst case: the deciding rule is last and
//! every rule before it fails only on its last (most expensive) condition, so each is evaluated
//! in full. Also: the default policy on common statements, load time, and allocations per
//! decision (counted by a global allocator; the allow path must not allocate).
//!
//! `cargo bench --bench policy` measures; under `cargo test --benches` it runs a quick smoke pass.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    hint::black_box,
    time::{Duration, Instant},
};

use hoop_userspace::{
    identity::{Identity, IdentityKind},
    policy::engine::{Action, Input, Object, Policy},
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// `n` per-repository grants (the usual shape of a large policy): rule `i` lets repository
/// `acme/svc-i` write through `pg-*`; the input's repository is the last one's.
fn per_repository_policy(n: usize) -> String {
    let mut s = String::from("[defaults]\naction = \"deny\"\n");
    for i in 0..n {
        s.push_str(&format!(
            r#"
[[rule]]
name = "rule-{i}"
action = "allow"
statements = ["select", "insert", "update", "delete", "copy_from"]
target = "pg-*"
identity = {{ repository = "acme/svc-{i}", ref = ["refs/heads/main", "refs/tags/v*"] }}
"#
        ));
    }
    s
}

/// `n` rules: rule `i < n-1` matches the input in everything but its object patterns; the last
/// rule matches. Actions alternate so both object quantifiers (any/every) are exercised.
fn worst_case_policy(n: usize) -> String {
    let mut s = String::from("[defaults]\naction = \"deny\"\n");
    for i in 0..n {
        let last = i == n - 1;
        let action = match (last, i % 3) {
            (true, _) => "allow",
            (_, 0) => "deny",
            (_, 1) => "review",
            _ => "allow",
        };
        let objects = if last {
            "[\"public.*\", \"audit.events\"]".to_string()
        } else {
            format!("[\"app{i}.*\", \"billing{i}.invoices\"]")
        };
        s.push_str(&format!(
            r#"
[[rule]]
name = "rule-{i}"
action = "{action}"
protocol = "postgres"
statements = ["select", "insert", "update", "delete"]
target = ["pg-*", "db-{i}"]
database = "app*"
user = "*_rw"
exe = ["/usr/bin/psql", "/usr/lib/postgresql/*/bin/*"]
objects = {objects}
object_kinds = ["relation"]
[rule.identity]
kind = "oidc"
repository = ["acme/*", "org{i}/api"]
ref = "refs/heads/{{main,release/**}}"
"#
        ));
    }
    s
}

fn github() -> Identity {
    let mut id = Identity::anonymous("");
    id.kind = IdentityKind::Oidc;
    id.reason = None;
    id.provider = Some("github".into());
    id.subject = Some("repo:acme/api:ref:refs/heads/main".into());
    for (k, v) in [
        ("repository", "acme/api"),
        ("ref", "refs/heads/release/2.1"),
        ("workflow", "deploy"),
        ("actor", "octocat"),
    ] {
        id.attributes.insert(k.into(), v.into());
    }
    id
}

const OBJECTS: [Object<'static>; 3] = [
    Object {
        kind: "relation",
        schema: Some("public"),
        name: "orders",
        write: false,
    },
    Object {
        kind: "relation",
        schema: Some("public"),
        name: "customers",
        write: false,
    },
    Object {
        kind: "function",
        schema: None,
        name: "now",
        write: false,
    },
];

fn input<'a>(identity: &'a Identity, kind: &'a str, objects: &'a [Object<'a>]) -> Input<'a> {
    Input {
        identity,
        exe: Some("/usr/lib/postgresql/15/bin/psql"),
        uid: 1000,
        target: "pg-prod",
        protocol: "postgres",
        database: Some("app"),
        user: Some("app_rw"),
        kind,
        inner: None,
        objects,
        has_where: None,
    }
}

/// Mean time per decision over `budget`, and allocations per decision.
fn measure(policy: &Policy, input: &Input<'_>, budget: Duration) -> (f64, f64) {
    let mut iters = 0u64;
    let a0 = allocs();
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..256 {
            black_box(policy.decide(black_box(input)));
        }
        iters += 256;
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    let a = (allocs() - a0) as f64 / iters as f64;
    (ns / 1000.0, a)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let budget = Duration::from_millis(if bench { 1500 } else { 20 });
    let id = github();

    let mut per_repo = github();
    for n in [10, 100, 500] {
        let text = per_repository_policy(n);
        let policy = Policy::parse(&text, "bench").unwrap_or_else(|e| panic!("{e}"));
        per_repo
            .attributes
            .insert("repository".into(), format!("acme/svc-{}", n - 1));
        per_repo
            .attributes
            .insert("ref".into(), "refs/heads/main".into());
        let inp = input(&per_repo, "update", &OBJECTS[..2]);
        let d = policy.decide(&inp);
        assert_eq!(&*d.rule, format!("rule-{}", n - 1), "the last rule decides");
        let (us, a) = measure(&policy, &inp, budget);
        assert_eq!(a, 0.0, "an allow decision must not allocate");
        if n == 10 {
            println!("per-repository grants, deciding rule last (µs per decision)");
        }
        println!(
            "  {n:>3} rules: {us:>8.3} µs/decision  ({:>6.1} ns/rule)  allocs/decision {a}",
            us * 1000.0 / n as f64
        );
    }

    println!(
        "adversarial: deciding rule last, every earlier rule fails only on its last condition \
         (12 conditions, 11 globs)"
    );
    for n in [10, 100, 500] {
        let text = worst_case_policy(n);
        let t = Instant::now();
        let policy = Policy::parse(&text, "bench").unwrap_or_else(|e| panic!("{e}"));
        let load = t.elapsed();
        let inp = input(&id, "select", &OBJECTS[..2]);
        let d = policy.decide(&inp);
        assert_eq!(&*d.rule, format!("rule-{}", n - 1), "the last rule decides");
        assert_eq!(d.action, Action::Allow);
        let (us, a) = measure(&policy, &inp, budget);
        assert_eq!(a, 0.0, "an allow decision must not allocate");
        println!(
            "  {n:>3} rules: {us:>8.3} µs/decision  ({:>6.1} ns/rule)  allocs/decision {a}  load {:.1} ms",
            us * 1000.0 / n as f64,
            load.as_secs_f64() * 1000.0
        );
    }

    println!("default policy");
    let builtin = Policy::builtin();
    let anon = Identity::anonymous("no token");
    let cases: [(&str, &Identity, &str, Action); 5] = [
        ("select (oidc)", &id, "select", Action::Allow),
        ("insert (oidc)", &id, "insert", Action::Allow),
        ("select (anonymous)", &anon, "select", Action::Allow),
        ("insert (anonymous)", &anon, "insert", Action::Review),
        ("drop (oidc)", &id, "drop", Action::Deny),
    ];
    for (label, who, kind, want) in cases {
        let inp = input(who, kind, &OBJECTS);
        assert_eq!(builtin.decide(&inp).action, want, "{label}");
        let (us, a) = measure(&builtin, &inp, budget / 3);
        println!("  {label:<20} {us:>8.3} µs/decision  allocs/decision {a}");
        if want != Action::Deny {
            assert_eq!(a, 0.0, "{label}: must not allocate");
        }
    }
}
