"""The nn.Modules protodef's PyTorch converters build, one module per layer family (as the converters)."""
