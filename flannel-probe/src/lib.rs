//! flannel-probe: finds why Flannel VXLAN traffic dies on a node.
pub mod datapath;
