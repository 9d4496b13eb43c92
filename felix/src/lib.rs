//! Brindle dataplane (felix): computes desired kernel state from the model and reconciles it. (Issue 3.)
