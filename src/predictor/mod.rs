//! The Mamba predictor: forward, backward, selective scan, initialisation, weights.
