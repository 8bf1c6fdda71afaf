//! Each validation rule has a failing example and the position it must report.

use std::path::Path;

use super::*;

const VALID: &str = "\
apiVersion: installer/v1
kind: Inventory
cluster:
  name: lab
  kubernetes: 1.36.2
  network:
    pods: 10.244.0.0/16
    services: 10.96.0.0/12
  controlPlane:
    vip: 192.168.10.100
    port: 8443
ssh:
  user: ops
  knownHosts: /tmp/kh
hosts:
  - name: master-1
    address: 192.168.10.11
    roles: [master]
  - name: master-2
    address: 192.168.10.12
    roles: [master]
  - name: master-3
    address: 192.168.10.13
    roles: [master]
  - name: worker-1
    address: 192.168.10.21
    roles: [worker]
";

fn with(from: &str, to: &str) -> String {
    assert!(
        VALID.contains(from),
        "test bug: {from:?} not in the base inventory"
    );
    VALID.replacen(from, to, 1)
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("/inv/hosts.yaml"), text) {
        Ok(_) => panic!("inventory was accepted:\n{text}"),
        Err(e) => e.problems,
    }
}

/// Asserts exactly one error is reported, at `line:col`, mentioning `needle`.
fn assert_error_at(text: &str, line: u32, column: u32, needle: &str) {
    let errors: Vec<Problem> = problems(text)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let e = &errors[0];
    assert!(
        e.message.contains(needle),
        "message {:?} lacks {needle:?}",
        e.message
    );
    assert_eq!(
        (e.line, e.column),
        (line, column),
        "wrong position for {:?}",
        e.message
    );
    assert!(e.hint.is_some(), "no hint for {:?}", e.message);
}

#[test]
fn valid_inventory_is_accepted_with_defaults_filled() {
    let loaded = parse(Path::new("/inv/hosts.yaml"), VALID).expect("valid");
    let inv = loaded.inventory;
    assert!(loaded.warnings.is_empty());
    assert_eq!(inv.cluster.runtime, Runtime::Docker);
    assert_eq!(inv.cluster.control_plane.endpoint(), "192.168.10.100:8443");
    assert_eq!(inv.masters().count(), 3);
    assert_eq!(inv.workers().count(), 1);
    assert_eq!(inv.hosts[0].ssh.port, 22);
    assert_eq!(inv.hosts[0].ssh.host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(
        inv.packages.kubernetes_repo, "https://pkgs.k8s.io/core:/stable:/v1.36/{format}/",
        "the package format (deb, rpm) is filled in per host from its OS family"
    );
    assert!(inv.addons.weave.enabled && inv.addons.rook.enabled);
    assert_eq!(inv.state_dir(), Path::new("/inv/.installer/lab"));
}

#[test]
fn example_inventory_parses_apart_from_its_key_file() {
    let text = include_str!("../../inventory/hosts.yaml")
        .replace("identityFile: ~/.ssh/id_ed25519", "# identityFile");
    let loaded =
        parse(Path::new("inventory/hosts.yaml"), &text).expect("documented example must be valid");
    assert_eq!(loaded.inventory.hosts.len(), 5);
    assert_eq!(loaded.inventory.hosts[4].ssh.user, "admin");
    assert_eq!(loaded.inventory.hosts[4].ssh.port, 2222);
    assert_eq!(
        loaded.inventory.hosts[3].taints[0].to_string(),
        "dedicated=db:NoSchedule"
    );
}

#[test]
fn unknown_field_is_rejected_at_its_position() {
    assert_error_at(
        &with("    port: 8443\n", "    port: 8443\n    vipp: 1.2.3.4\n"),
        12,
        5,
        "unknown field",
    );
}

#[test]
fn unknown_host_field_is_rejected_at_its_position() {
    assert_error_at(
        &with(
            "    roles: [worker]\n",
            "    roles: [worker]\n    lables: {a: b}\n",
        ),
        28,
        5,
        "unknown field",
    );
}

#[test]
fn duplicate_host_name_is_rejected_at_the_second_use() {
    assert_error_at(
        &with("  - name: worker-1", "  - name: master-1"),
        25,
        11,
        "used twice",
    );
}

#[test]
fn duplicate_address_is_rejected_at_the_second_use() {
    assert_error_at(
        &with("192.168.10.21", "192.168.10.11"),
        26,
        14,
        "used twice",
    );
}

#[test]
fn inventory_without_master_is_rejected() {
    let text = VALID.replace("roles: [master]", "roles: [worker]");
    assert_error_at(&text, 16, 3, "no host has the master role");
}

#[test]
fn even_number_of_masters_warns_about_quorum() {
    let text = with(
        "    roles: [master]\n  - name: worker-1",
        "    roles: [master]\n  - name: master-4",
    )
    .replacen("    roles: [worker]", "    roles: [master]", 1);
    let loaded =
        parse(Path::new("/inv/hosts.yaml"), &text).expect("even masters is only a warning");
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].contains("/inv/hosts.yaml:16:3: warning: 4 masters"),
        "{}",
        loaded.warnings[0]
    );
}

#[test]
fn vip_inside_pod_subnet_is_rejected() {
    assert_error_at(
        &with("vip: 192.168.10.100", "vip: 10.244.3.3"),
        10,
        10,
        "inside the pod subnet",
    );
}

#[test]
fn vip_inside_service_subnet_is_rejected() {
    assert_error_at(
        &with("vip: 192.168.10.100", "vip: 10.96.0.50"),
        10,
        10,
        "inside the service subnet",
    );
}

#[test]
fn vip_equal_to_a_host_address_is_rejected() {
    assert_error_at(
        &with("vip: 192.168.10.100", "vip: 192.168.10.12"),
        20,
        14,
        "has the VIP",
    );
}

#[test]
fn overlapping_subnets_are_rejected() {
    assert_error_at(
        &with("services: 10.96.0.0/12", "services: 10.244.128.0/17"),
        8,
        15,
        "overlap",
    );
}

#[test]
fn bad_cidr_is_rejected() {
    assert_error_at(
        &with("pods: 10.244.0.0/16", "pods: 10.244.0.0/33"),
        7,
        11,
        "is not a CIDR",
    );
}

#[test]
fn cidr_with_host_bits_is_rejected() {
    assert_error_at(
        &with("pods: 10.244.0.0/16", "pods: 10.244.1.0/16"),
        7,
        11,
        "host bits",
    );
}

#[test]
fn bad_host_address_is_rejected() {
    assert_error_at(
        &with("192.168.10.13", "192.168.10.300"),
        23,
        14,
        "not an IP address",
    );
}

#[test]
fn bad_vip_is_rejected() {
    assert_error_at(
        &with("vip: 192.168.10.100", "vip: my-vip"),
        10,
        10,
        "not an IP address",
    );
}

#[test]
fn missing_identity_file_is_rejected() {
    assert_error_at(
        &with("  user: ops\n", "  user: ops\n  identityFile: keys/nope\n"),
        14,
        17,
        "/inv/keys/nope does not exist",
    );
}

#[test]
fn kubernetes_minor_outside_supported_range_is_rejected() {
    assert_error_at(
        &with("kubernetes: 1.36.2", "kubernetes: 1.34.4"),
        5,
        15,
        "not supported",
    );
    assert_error_at(
        &with("kubernetes: 1.36.2", "kubernetes: 1.38.0"),
        5,
        15,
        "not supported",
    );
}

#[test]
fn inexact_kubernetes_version_is_rejected() {
    assert_error_at(
        &with("kubernetes: 1.36.2", "kubernetes: \"1.36\""),
        5,
        15,
        "not an exact",
    );
}

#[test]
fn unknown_runtime_is_rejected() {
    assert_error_at(
        &with(
            "  kubernetes: 1.36.2\n",
            "  kubernetes: 1.36.2\n  runtime: cri-o\n",
        ),
        6,
        12,
        "unknown container runtime",
    );
}

#[test]
fn unknown_role_is_rejected() {
    assert_error_at(
        &with("roles: [worker]", "roles: [wroker]"),
        27,
        13,
        "unknown role",
    );
}

#[test]
fn bad_cluster_name_is_rejected() {
    assert_error_at(&with("name: lab", "name: Lab_1"), 4, 9, "DNS-1123");
}

#[test]
fn bad_taint_is_rejected() {
    assert_error_at(
        &with(
            "    roles: [worker]\n",
            "    roles: [worker]\n    taints: [\"a=b:Sometimes\"]\n",
        ),
        28,
        14,
        "taint",
    );
}

#[test]
fn unknown_host_key_policy_is_rejected() {
    assert_error_at(
        &with("  user: ops\n", "  user: ops\n  hostKeyPolicy: yolo\n"),
        14,
        18,
        "hostKeyPolicy",
    );
}

#[test]
fn vip_and_load_balancer_together_are_rejected() {
    assert_error_at(
        &with(
            "    port: 8443\n",
            "    port: 8443\n    loadBalancer: {address: lb.example.com}\n",
        ),
        12,
        19,
        "both",
    );
}

#[test]
fn secret_in_place_of_env_name_is_rejected() {
    assert_error_at(
        &with("  user: ops\n", "  user: ops\n  passwordEnv: hunter2!\n"),
        14,
        16,
        "environment variable",
    );
}

#[test]
fn yaml_syntax_error_points_at_the_position() {
    let errs = problems(&with("    roles: [worker]\n", "    roles: [worker\n"));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line >= 27, "{errs:?}");
}

#[test]
fn several_errors_are_all_reported() {
    let text = with("vip: 192.168.10.100", "vip: nope").replace("192.168.10.21", "192.168.10.11");
    let errs = problems(&text);
    assert!(errs.len() >= 2, "{errs:#?}");
}

#[test]
fn rendered_error_names_file_line_col_and_hint() {
    let err = parse(
        Path::new("/inv/hosts.yaml"),
        &with("roles: [worker]", "roles: [wroker]"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/inv/hosts.yaml:27:13: error: unknown role"),
        "{text}"
    );
    assert!(
        text.contains("hint: roles are `master` and `worker`"),
        "{text}"
    );
    assert!(text.contains("no host was contacted"), "{text}");
}

#[test]
fn minor_placeholder_in_kubernetes_repo_is_filled_in() {
    let text = with(
        "ssh:\n",
        "packages:\n  kubernetesRepo: http://mirror.lab/kubernetes/core:/stable:/v{minor}/deb/\nssh:\n",
    );
    let inv = parse(Path::new("/inv/hosts.yaml"), &text)
        .expect("valid")
        .inventory;
    assert_eq!(
        inv.packages.kubernetes_repo,
        "http://mirror.lab/kubernetes/core:/stable:/v1.36/deb/"
    );
}

fn rendered_error(text: &str) -> String {
    parse(Path::new("/inv/hosts.yaml"), text)
        .expect_err("inventory was accepted")
        .to_string()
}

#[test]
fn plaintext_password_is_masked_and_the_hint_names_password_env() {
    let text = rendered_error(&with("  user: ops\n", "  user: ops\n  password: hunter2\n"));
    assert!(
        text.contains("/inv/hosts.yaml:14:3: error: unknown field `password`"),
        "{text}"
    );
    assert!(text.contains("  |   password: ****\n  |   ^"), "{text}");
    assert!(text.contains("`passwordEnv: SSH_PASSWORD`"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn parser_errors_say_error_and_the_position_once() {
    let text = rendered_error(&with("  user: ops\n", "  user: ops\n  password: hunter2\n"));
    assert_eq!(text.matches("error:").count(), 1, "{text}");
    assert!(!text.contains("line 14 column 3"), "{text}");
}

#[test]
fn secret_on_a_syntax_error_line_is_masked() {
    let text = rendered_error(&with(
        "  user: ops\n",
        "  user: ops\n  sudoPasswordEnv: \"s3cret pw\n",
    ));
    assert!(text.contains("error: unclosed quote"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn secret_given_where_a_variable_name_belongs_is_masked_in_the_message() {
    let text = rendered_error(&with(
        "  user: ops\n",
        "  user: ops\n  passwordEnv: hunter2!\n",
    ));
    assert!(
        text.contains("error: \"****\" is not an environment variable name"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn json_problems_carry_position_and_are_masked() {
    let err = parse(
        Path::new("/inv/hosts.yaml"),
        &with("  user: ops\n", "  user: ops\n  password: hunter2\n"),
    )
    .unwrap_err();
    let json = err.json_lines();
    let event: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(event["file"], "/inv/hosts.yaml");
    assert_eq!(
        (event["line"].as_u64(), event["col"].as_u64()),
        (Some(14), Some(3))
    );
    assert!(event["hint"].as_str().unwrap().contains("passwordEnv"));
    assert!(!json.contains("hunter2"), "{json}");
}

#[test]
fn problems_are_listed_in_file_order() {
    let text =
        with("vip: 192.168.10.100", "vip: nope").replace("roles: [worker]", "roles: [wroker]");
    let lines: Vec<u32> = problems(&text).iter().map(|p| p.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn empty_file_is_one_problem_at_the_start() {
    let errs = problems("# nothing here yet\n");
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (1, 1));
    assert!(errs[0].message.contains("empty"), "{errs:?}");
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let mut bytes = VALID.as_bytes().to_vec();
    let at = VALID.find("lab").unwrap();
    bytes[at] = 0xff;
    let err = parse_bytes(Path::new("/inv/hosts.yaml"), &bytes).unwrap_err();
    assert_eq!((err.problems[0].line, err.problems[0].column), (4, 9));
    assert!(err.problems[0].message.contains("not UTF-8"));
}

fn network_problem(network: &str) -> String {
    let text = format!(
        "apiVersion: installer/v1\nkind: Inventory\ncluster:\n  name: c\n  kubernetes: 1.36.2\n  network: {network}\n  controlPlane: {{vip: 10.0.0.100}}\nssh: {{knownHosts: /tmp/kh}}\nhosts:\n  - {{name: m, address: 10.0.0.11, roles: [master]}}\n"
    );
    match parse(Path::new("/x/h.yaml"), &text) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn service_subnet_larger_than_a_slash_12_is_rejected_like_kubeadm() {
    let e = network_problem("{services: 10.0.0.0/8}");
    assert!(
        e.contains("6:") && e.contains("too large") && e.contains("/12"),
        "{e}"
    );
    assert_eq!(network_problem("{services: 10.96.0.0/12}"), "");
}

#[test]
fn pod_subnet_must_hold_the_node_mask() {
    let e = network_problem("{pods: 10.244.0.0/25}");
    assert!(e.contains("smaller than the /24"), "{e}");
    let e = network_problem("{pods: 10.0.0.0/7}");
    assert!(e.contains("16 bits"), "{e}");
}

#[test]
fn ipv6_ranges_are_rejected_clearly() {
    let e = network_problem("{pods: \"fd00::/48\"}");
    assert!(e.contains("IPv6") && e.contains("not supported"), "{e}");
}
