//! Brindle agent library.
