//! `crictl` lab simulator.

fn main() {
    std::process::exit(sim_node::cri::crictl::main());
}
