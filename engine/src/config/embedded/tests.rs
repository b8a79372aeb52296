//! Tests of the embedded-Ruby subset.

use super::*;

fn ctx() -> EvalContext {
    let env = HashMap::from([
        ("SET".to_string(), "value".to_string()),
        ("EMPTY".to_string(), String::new()),
        ("HOST".to_string(), "10.0.0.1".to_string()),
        ("PORT".to_string(), "443".to_string()),
    ]);
    EvalContext::with_env("host1", Some(3), env)
}

fn s(v: &str) -> Result<Eval, String> {
    Ok(Eval::Value(Value::Str(v.into())))
}

#[test]
fn supported_idioms() {
    let c = ctx();
    assert_eq!(eval("ENV['SET']", &c), s("value"));
    assert_eq!(eval("ENV[\"SET\"]", &c), s("value"));
    assert_eq!(eval("ENV['UNSET']", &c), Ok(Eval::Value(Value::Nil)));
    assert_eq!(eval("ENV['UNSET'] || 'dflt'", &c), s("dflt"));
    assert_eq!(eval("ENV['SET'] || 'dflt'", &c), s("value"));
    // "" is truthy in Ruby.
    assert_eq!(eval("ENV['EMPTY'] || 'dflt'", &c), s(""));
    assert_eq!(eval("ENV['UNSET'] || ENV['SET']", &c), s("value"));
    assert_eq!(eval("ENV['UNSET'] || ENV['UNSET2'] || 'x'", &c), s("x"));
    assert_eq!(eval("ENV.fetch('UNSET', 'd2')", &c), s("d2"));
    assert_eq!(eval("ENV.fetch('SET', 'd2')", &c), s("value"));
    assert_eq!(eval("ENV.fetch(\"SET\")", &c), s("value"));
    assert_eq!(eval("Socket.gethostname", &c), s("host1"));
    assert_eq!(eval("Socket.gethostname()", &c), s("host1"));
    assert_eq!(eval(" hostname ", &c), s("host1"));
    assert_eq!(eval("worker_id", &c), s("3"));
    assert_eq!(eval("use_nil", &c), Ok(Eval::SetNil));
    assert_eq!(eval("use_default", &c), Ok(Eval::SetDefault));
    assert_eq!(eval("ENV['UNSET'] || use_default", &c), Ok(Eval::SetDefault));
    assert_eq!(eval("ENV['SET'] || use_default", &c), s("value"));
    assert_eq!(eval("ENV['UNSET'] || 24224", &c), Ok(Eval::Value(Value::Int(24224))));
    assert_eq!(eval("ENV['UNSET'] || true", &c), Ok(Eval::Value(Value::Bool(true))));
    assert_eq!(eval("1+1", &c), Ok(Eval::Value(Value::Int(2))));
    assert_eq!(eval("\"}\"", &c), s("}"));
    assert_eq!(eval("'it\\'s' + \"\\t#{ENV['SET']}\"", &c), s("it's\tvalue"));
    assert_eq!(eval("(ENV['UNSET'] || 'a') + 'b'", &c), s("ab"));
    // fluentd-kubernetes-daemonset's kubernetes_url.
    assert_eq!(
        eval(
            "ENV['FLUENT_FILTER_KUBERNETES_URL'] || 'https://' + ENV.fetch('HOST') + ':' + ENV.fetch('PORT') + '/api'",
            &c
        ),
        s("https://10.0.0.1:443/api")
    );
    // fluentd-kubernetes-daemonset's pos_file.
    assert_eq!(
        eval("File.join('/var/log/', ENV.fetch('FLUENT_POS_EXTRA_DIR', ''), 'fluentd-containers.log.pos')", &c),
        s("/var/log/fluentd-containers.log.pos")
    );
    assert_eq!(eval("File.join('/var/log/', ENV['SET'], 'x.pos')", &c), s("/var/log/value/x.pos"));
    // Empty code: fluentd's prepended `worker_id = ...` is the last expression.
    assert_eq!(eval("", &c), s("3"));
}

#[test]
fn ruby_errors_are_config_errors() {
    let c = ctx();
    let e = eval("ENV.fetch('UNSET')", &c).unwrap_err();
    assert!(e.contains("key not found") && e.contains("ENV.fetch('UNSET', 'value')"), "{e}");
    // The right side of || is not evaluated when the left is truthy...
    assert_eq!(eval("ENV['SET'] || ENV.fetch('UNSET')", &c), s("value"));
    // ...but arguments are, as in Ruby.
    assert_eq!(eval("ENV.fetch('SET', use_default)", &c), Ok(Eval::SetDefault));
    let e = eval("ENV['UNSET'] + 'x'", &c).unwrap_err();
    assert!(e.contains("undefined method '+' for nil"), "{e}");
    let e = eval("'x' + 1", &c).unwrap_err();
    assert!(e.contains("no implicit conversion of Integer into String"), "{e}");
}

#[test]
fn file_join_follows_ruby() {
    let j = |v: &[&str]| file_join(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(j(&["a", "b"]), "a/b");
    assert_eq!(j(&["a/", "b"]), "a/b");
    assert_eq!(j(&["a/", "/b"]), "a/b");
    assert_eq!(j(&["a//", "//b"]), "a//b");
    assert_eq!(j(&["a", "/b"]), "a/b");
    assert_eq!(j(&["a/", "", "b"]), "a/b");
    assert_eq!(j(&["a", "", "b"]), "a/b");
    assert_eq!(j(&["", "b"]), "/b");
    assert_eq!(j(&["a", ""]), "a/");
    assert_eq!(j(&["/", "/a"]), "/a");
    assert_eq!(j(&["/", "a"]), "/a");
    assert_eq!(j(&["a"]), "a");
    assert_eq!(j(&[]), "");
    let c = ctx();
    assert!(eval("File.join('a', nil)", &c).unwrap_err().contains("File.join: no implicit conversion of nil"));
}

#[test]
fn anything_else_is_an_error() {
    let c = ctx();
    for code in [
        "system('rm -rf /')",
        "ENV['X'].upcase",
        "`id`",
        "File.read('/etc/passwd')",
        "File.join(Dir.pwd, 'x')",
        "File.read('x')",
        "File.join('a' 'b')",
        "Dir.pwd",
        "ENV",
        "ENV['X'",
        "#",
        "1.5",
        "ENV['X'] ||",
        "'unterminated",
        "\"\\u00e9\"",
        "ENV.fetch('X') { 'd' }",
        "Socket.getifaddrs.first",
    ] {
        let e = eval(code, &c).unwrap_err();
        assert!(
            e.starts_with("embedded Ruby is not supported: `") && e.contains("ENV.fetch('X', 'default')"),
            "{code}: {e}"
        );
    }
    let deep = format!("{}'x'{}", "(".repeat(100), ")".repeat(100));
    assert!(eval(&deep, &c).unwrap_err().contains("not supported"));
    let long = "x".repeat(1000);
    assert!(eval(&long, &c).unwrap_err().len() < 400);
}

#[test]
fn ternaries_locals_rescue_and_names() {
    let c = ctx();
    assert_eq!(eval("ENV['SET'] ? ENV['SET'] : 'd'", &c), s("value"));
    assert_eq!(eval("ENV['UNSET'] ? ENV['UNSET'] : 'd'", &c), s("d"));
    assert_eq!(eval("ENV['UNSET'] ? ENV['UNSET'] : 9243", &c), Ok(Eval::Value(Value::Int(9243))));
    assert_eq!(eval("ENV['SET'] == 'value' ? 'yes' : 'no'", &c), s("yes"));
    assert_eq!(eval("ENV['SET'] != 'value' ? 'yes' : 'no'", &c), s("no"));
    // `ENV['X'] || bareword`: Ruby's NameError only when the name is evaluated.
    assert_eq!(eval("ENV['SET'] || gzip", &c), s("value"));
    let e = eval("ENV['UNSET'] || gzip", &c).unwrap_err();
    assert!(e.contains("undefined local variable or method 'gzip'") && e.contains("'gzip'"), "{e}");
    assert!(eval("test", &c).unwrap_err().contains("undefined local variable or method 'test'"));
    // fluentd-kubernetes-daemonset's kubernetes_url (v1.16+).
    let k8s = "ENV['FLUENT_FILTER_KUBERNETES_URL'] || (host = ENV.fetch('KUBERNETES_SERVICE_HOST'); port = ENV.fetch('KUBERNETES_SERVICE_PORT'); host = (IPAddr.new(host).ipv6? ? '[' + host + ']' : host rescue host); 'https://' + host + ':' + port + '/api')";
    let env = |h: &str| {
        HashMap::from([
            ("KUBERNETES_SERVICE_HOST".to_string(), h.to_string()),
            ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
        ])
    };
    assert_eq!(eval(k8s, &EvalContext::with_env("h", None, env("10.0.0.1"))), s("https://10.0.0.1:443/api"));
    assert_eq!(eval(k8s, &EvalContext::with_env("h", None, env("fd00::1"))), s("https://[fd00::1]:443/api"));
    // Not an address: IPAddr raises, `rescue host` keeps the name.
    assert_eq!(eval(k8s, &EvalContext::with_env("h", None, env("kubernetes"))), s("https://kubernetes:443/api"));
    let e = eval(k8s, &c).unwrap_err();
    assert!(e.contains("ENV.fetch('KUBERNETES_SERVICE_HOST'): key not found"), "{e}");
    assert_eq!(eval("a = 'x'; b = a + 'y'; b", &c), s("xy"));
    assert_eq!(eval("nope rescue 'r'", &c), s("r"));
    // Code may span lines.
    assert_eq!(eval("ENV['UNSET'] ||\n  'multi'", &c), s("multi"));
    assert_eq!(eval("IPAddr.new('10.1.2.3').ipv4?", &c), Ok(Eval::Value(Value::Bool(true))));
}

#[test]
fn gethostbyname_first_is_the_canonical_name() {
    let c = ctx();
    // localhost resolves everywhere (its canonical name is localhost or localhost.localdomain).
    let Ok(Eval::Value(Value::Str(n))) = eval("Socket.gethostbyname('localhost').first", &c) else {
        panic!("localhost does not resolve")
    };
    assert!(n.starts_with("localhost"), "{n}");
    let e = eval("Socket.gethostbyname('no-such-host.invalid').first", &c).unwrap_err();
    assert!(e.contains("SocketError"), "{e}");
    assert!(eval("Socket.gethostbyname('localhost')", &c).unwrap_err().contains("not supported"));
}

#[test]
fn long_chains_are_flat_and_bounded() {
    let c = ctx();
    // Chains evaluate iteratively (no recursion per operand).
    let ors = format!("{} || 'end'", vec!["ENV['UNSET']"; 200].join(" || "));
    assert_eq!(eval(&ors, &c), s("end"));
    let adds = vec!["'ab'"; 600].join("+");
    assert_eq!(eval(&adds, &c), s(&"ab".repeat(600)));
    let e = eval(&vec!["'a'"; 2000].join("+"), &c).unwrap_err();
    assert!(e.starts_with("embedded code longer than 4096 bytes"), "{e}");
}

#[test]
fn random_code_never_panics() {
    let c = ctx();
    let atoms = [
        "ENV",
        "[",
        "]",
        "'X'",
        "\"SET\"",
        "||",
        "+",
        "(",
        ")",
        ".",
        "fetch",
        ",",
        "use_nil",
        "use_default",
        "nil",
        "true",
        "1",
        "-",
        "File",
        "join",
        "Socket",
        "gethostname",
        "hostname",
        "worker_id",
        "#{",
        "}",
        "\\",
        " ",
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20000 {
        let mut code = String::new();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for k in 0..(x % 12) {
            code.push_str(atoms[((x >> (k * 5)) % atoms.len() as u64) as usize]);
        }
        let _ = eval(&code, &c);
    }
}
