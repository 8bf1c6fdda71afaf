//! `kubeadm` lab simulator.

fn main() {
    std::process::exit(sim_node::kubeadm::main());
}
