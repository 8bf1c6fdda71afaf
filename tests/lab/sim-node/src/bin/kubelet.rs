//! `kubelet` lab simulator.

fn main() {
    std::process::exit(sim_node::kubelet::main());
}
