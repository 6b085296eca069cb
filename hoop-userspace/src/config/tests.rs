use super::*;

fn invalid(text: &str) -> String {
    Config::parse(text, "t").unwrap_err().to_string()
}

#[test]
fn embedded_default_is_valid() {
    let cfg = Config::parse(EMBEDDED_DEFAULT, "embedded").unwrap();
    assert_eq!(cfg.listen.address, "127.0.0.1:977".parse().unwrap());
    assert_eq!(cfg.intercept.pin_dir, PathBuf::from("/sys/fs/bpf/hoop"));
    let sql = cfg.targets.iter().find(|t| t.name == "azure-sql").unwrap();
    assert_eq!(sql.port_list().count(), 1 + 1000);
    assert!(sql.wildcard_hosts().any(|h| h == "*.database.windows.net"));
    let arm = cfg.targets.iter().find(|t| t.name == "arm").unwrap();
    assert_eq!(
        arm.exact_hosts().collect::<Vec<_>>(),
        ["management.azure.com"]
    );
}

#[test]
fn empty_file_gets_defaults() {
    let cfg = Config::parse("", "t").unwrap();
    assert_eq!(
        cfg,
        Config::parse("[listen]\n[intercept]\n[state]\n[proxy]\n", "t").unwrap()
    );
    assert_eq!(cfg.state.dir, PathBuf::from("/var/lib/hoop"));
    assert!(cfg.intercept.guard);
}

#[test]
fn unknown_keys_are_named() {
    assert!(invalid("[listen]\nadress = \"127.0.0.1:1\"\n").contains("adress"));
    assert!(
        invalid("[[target]]\nname='a'\nprotocol='tcp'\ncidrs=['10.0.0.0/8']\nports=[1]\ncolor=1\n")
            .contains("color")
    );
    assert!(invalid("[bogus]\n").contains("bogus"));
}

#[test]
fn bad_values_are_named() {
    let t = |extra: &str| format!("[[target]]\nname='a'\nprotocol='tcp'\n{extra}\n");
    assert!(invalid(&t("cidrs=['10.0.0/8']\nports=[1]")).contains("10.0.0/8"));
    assert!(invalid(&t("cidrs=['10.0.0.1/8']\nports=[1]")).contains("target[0].cidrs[0]"));
    assert!(invalid(&t("cidrs=['10.0.0.0/8']\nports=[70000]")).contains("70000"));
    assert!(invalid(&t("cidrs=['10.0.0.0/8']\nports=['20-10']")).contains("target[0].ports[0]"));
    assert!(invalid(&t("cidrs=['10.0.0.0/8']\nports=[]")).contains("target[0].ports"));
    assert!(invalid(&t("ports=[1]")).contains("target[0].cidrs"));
    assert!(invalid(&t("hosts=['bad host']\nports=[1]")).contains("target[0].hosts[0]"));
    assert!(
        invalid("[[target]]\nname='a'\nprotocol='ftp'\ncidrs=['10.0.0.0/8']\nports=[1]\n")
            .contains("ftp")
    );
    assert!(invalid("[listen]\naddress='10.0.0.1:977'\n").contains("listen.address"));
    assert!(invalid("[intercept]\nmark=0\n").contains("intercept.mark"));
    assert!(invalid("[state]\ndir='relative'\n").contains("state.dir"));
    assert!(invalid("[metrics]\nlisten='0.0.0.0:9477'\n").contains("metrics.listen"));
    assert!(invalid("[metrics]\nport=1\n").contains("port"));
}

#[test]
fn listener_cannot_be_a_target() {
    let e = invalid(
        "[[target]]\nname='a'\nprotocol='tcp'\ncidrs=['127.0.0.0/8']\nports=['900-1000']\n",
    );
    assert!(e.contains("covers hoopd's own listener"), "{e}");
}

#[test]
fn duplicate_names_rejected() {
    let one = "[[target]]\nname='a'\nprotocol='tcp'\ncidrs=['10.0.0.0/8']\nports=[1]\n";
    assert!(invalid(&format!("{one}{one}")).contains("duplicate target name"));
}

#[test]
fn dns_keys_validated() {
    assert!(invalid("[dns]\nport=0\n").contains("dns.port"));
    assert!(invalid("[dns]\nport=977\n").contains("must differ from the listener ports"));
    assert!(invalid("[dns]\nmin_ttl_s=100\nmax_ttl_s=10\n").contains("dns.max_ttl_s"));
    assert!(invalid("[dns]\nupstream_timeout_ms=0\n").contains("dns.upstream_timeout_ms"));
    assert!(invalid("[dns]\nresolvers=['not an address']\n").contains("resolvers"));
    let c = Config::parse(
        "[dns]\ncapture=false\nport=977\nresolvers=['[::1]:53']\n",
        "t",
    )
    .unwrap();
    assert!(!c.dns.capture);
    assert_eq!(c.dns.resolvers, vec!["[::1]:53".parse().unwrap()]);
}

#[test]
fn embedded_default_protects_azure_by_name() {
    let c = Config::parse(crate::config::EMBEDDED_DEFAULT, "embedded").unwrap();
    assert!(c.dns.capture);
    let ports = |name: &str| {
        let t = c.targets.iter().find(|t| t.name == name).unwrap();
        (
            t.hosts.clone(),
            t.ports.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )
    };
    let (hosts, p) = ports("azure-postgres");
    assert!(hosts.contains(&"*.postgres.database.azure.com".to_string()));
    assert_eq!(p, vec!["5432"]);
    let (hosts, p) = ports("azure-sql");
    assert!(hosts.contains(&"*.database.windows.net".to_string()));
    assert_eq!(p, vec!["1433", "11000-11999"]);
    let (hosts, p) = ports("aks");
    assert_eq!(
        (hosts, p),
        (vec!["*.azmk8s.io".to_string()], vec!["443".to_string()])
    );
}

#[test]
fn metrics_defaults_and_disable() {
    let cfg = Config::parse("", "t").unwrap();
    assert!(cfg.metrics.enabled);
    assert_eq!(cfg.metrics.listen, "127.0.0.1:9477".parse().unwrap());
    let off = Config::parse("[metrics]\nenabled = false\n", "t").unwrap();
    assert!(!off.metrics.enabled);
    let v6 = Config::parse("[metrics]\nlisten = '[::1]:9000'\n", "t").unwrap();
    assert_eq!(v6.metrics.listen.port(), 9000);
}

#[test]
fn connection_workers() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(Config::parse("", "t").unwrap().listen.worker_count(), cores);
    let three = Config::parse("[listen]\nworkers = 3\n", "t").unwrap();
    assert_eq!(three.listen.worker_count(), 3);
    let e = invalid("[listen]\nworkers = 5000\n");
    assert!(e.contains("listen.workers") && e.contains("1024"), "{e}");
    let e = invalid("[listen]\nworkers = -1\n");
    assert!(e.contains("workers"), "{e}");
}

#[test]
fn proxy_settings() {
    let default = Config::parse("", "t").unwrap().proxy.settings();
    assert_eq!(default.connect, Duration::from_secs(10));
    assert_eq!(default.startup, Duration::from_secs(60));
    let set = Config::parse("[proxy]\nstartup_timeout_ms = 250\n", "t").unwrap();
    assert_eq!(set.proxy.settings().startup, Duration::from_millis(250));
    assert_eq!(default.max_client_message, 64 << 20);
    for bad in ["0", "1048575", "1073741824"] {
        let e = invalid(&format!("[proxy]\nmax_client_message_bytes = {bad}\n"));
        assert!(e.contains("proxy.max_client_message_bytes"), "{e}");
    }
    let most = "[proxy]\nmax_client_message_bytes = 1073741823\n";
    let most = Config::parse(most, "t").unwrap().proxy.settings();
    assert_eq!(most.max_client_message, (1 << 30) - 1);
    for bad in ["0", "3600001"] {
        let e = invalid(&format!("[proxy]\nstartup_timeout_ms = {bad}\n"));
        assert!(
            e.contains("proxy.startup_timeout_ms") && e.contains("3600000"),
            "{e}"
        );
    }
}

#[test]
fn busy_polling() {
    let default = Config::parse("", "t").unwrap();
    assert_eq!(default.listen.busy_poll(), Duration::from_micros(200));
    let off = Config::parse("[listen]\nbusy_poll_us = 0\n", "t").unwrap();
    assert!(off.listen.busy_poll().is_zero());
    let e = invalid("[listen]\nbusy_poll_us = 20000\n");
    assert!(
        e.contains("listen.busy_poll_us") && e.contains("10000"),
        "{e}"
    );
    let e = invalid("[listen]\nbusy_poll_us = -5\n");
    assert!(e.contains("busy_poll_us"), "{e}");
}
