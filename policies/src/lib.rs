//! Brindle policy compiler: Kubernetes NetworkPolicy and Calico policy to backend-neutral rules. (Not started.)
