//! `cri-dockerd` lab simulator.

fn main() {
    std::process::exit(sim_node::cri::dockerd::main());
}
