"""Dense modules: Embed and Caffe's recurrent layers (RNN, LSTM).

Each class is copied verbatim into generated source (codegen.py): it stands alone, importing only torch."""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class Embed(nn.Module):
    """Caffe's Embed: rows of the (input_dim, num_output) weight picked by the input values truncated to
    integers, plus the bias."""

    def __init__(self, input_dim: int, num_output: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(input_dim, num_output))
        if bias:
            self.bias = nn.Parameter(torch.zeros(num_output))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.embedding(x.to(torch.int64), self.weight)
        bias = self.bias
        if bias is not None:
            y = y + bias
        return y


class CaffeRecurrent(nn.Module):
    """Caffe's LSTM (lstm=True) or RNN layer over inputs [x (T, N, ...), cont (T, N), optional static (N, ...),
    with expose_hidden the initial states (1, N, H): h_0, and for the LSTM c_0]. Per step, with h multiplied by
    cont_t first: the LSTM's gates = W_x x_t + b (+ W_static x_static) + W_h h, ordered i, f, o, g;
    c = cont_t sigmoid(f) c + sigmoid(i) tanh(g), h = sigmoid(o) tanh(c), output h. The RNN's
    h = tanh(W_x x_t + b (+ W_static x_static) + W_h h), output tanh(W_o h + b_o). Returns [outputs (T, N, H)]
    and, with expose_hidden, the final states."""

    def __init__(self, lstm: bool, in_features: int, hidden: int, static_features: int, expose_hidden: bool):
        super().__init__()
        self.lstm = lstm
        self.hidden = hidden
        self.expose_hidden = expose_hidden
        width = 4 * hidden if lstm else hidden
        self.weight_x = nn.Parameter(torch.zeros(width, in_features))
        self.bias_x = nn.Parameter(torch.zeros(width))
        if static_features:
            self.weight_static = nn.Parameter(torch.zeros(width, static_features))
        else:
            self.register_parameter("weight_static", None)
        self.weight_h = nn.Parameter(torch.zeros(width, hidden))
        if lstm:
            self.register_parameter("weight_o", None)
            self.register_parameter("bias_o", None)
        else:
            self.weight_o = nn.Parameter(torch.zeros(hidden, hidden))
            self.bias_o = nn.Parameter(torch.zeros(hidden))

    def forward(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        x, cont = inputs[0], inputs[1]
        steps, streams = x.shape[0], x.shape[1]
        projected = F.linear(x.reshape(steps, streams, -1), self.weight_x, self.bias_x)
        weight_static = self.weight_static
        first = 2
        if weight_static is not None:
            projected = projected + F.linear(inputs[2].reshape(streams, -1), weight_static)
            first = 3
        h = torch.zeros(streams, self.hidden, dtype=x.dtype, device=x.device)
        c = torch.zeros(streams, self.hidden, dtype=x.dtype, device=x.device)
        if self.expose_hidden:
            h = inputs[first].reshape(streams, self.hidden)
            if self.lstm:
                c = inputs[first + 1].reshape(streams, self.hidden)
        outputs: List[torch.Tensor] = []
        for t in range(steps):
            keep = cont[t].unsqueeze(1)
            summed = projected[t] + F.linear(h * keep, self.weight_h)
            weight_o, bias_o = self.weight_o, self.bias_o
            if weight_o is not None and bias_o is not None:
                h = torch.tanh(summed)
                outputs.append(torch.tanh(F.linear(h, weight_o, bias_o)))
            else:
                x_i, x_f, x_o, x_g = torch.chunk(summed, 4, dim=1)
                c = keep * torch.sigmoid(x_f) * c + torch.sigmoid(x_i) * torch.tanh(x_g)
                h = torch.sigmoid(x_o) * torch.tanh(c)
                outputs.append(h)
        result = [torch.stack(outputs, 0)]
        if self.expose_hidden:
            result.append(h.unsqueeze(0))
            if self.lstm:
                result.append(c.unsqueeze(0))
        return result
