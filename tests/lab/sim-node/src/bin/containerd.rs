//! `containerd` lab simulator (package containerd.io).

fn main() {
    std::process::exit(sim_node::cri::containerd::main());
}
