//! The frozen backbone: finding and loading ONNX Runtime, the backbone contract, the tokenizer.
