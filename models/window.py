"""The rolling window: the label for frame t equals the trained LSTM run on frames t-W+1..t.

The LSTM was trained on W-frame sequences (W = 32), classifying from the last step. Recomputing
W steps for every frame is exact but costs W sequential steps; carrying one state forever is
cheap but drifts from what was trained. This keeps W staggered states per stream instead, slot
k started at a frame n with n % W == k. Each new feature advances all W slots at once (one
batched step, all streams together); the slot that has now seen exactly W frames gives the label
and is restarted from zero on the next frame. Cost per frame: one LSTM step over a batch of W.

The layer-0 input projection is the same for all W slots of a stream (they all see the same
frame), so it is computed once per stream and broadcast: the largest matmul shrinks W-fold.
The rest is matmuls at the CPU's peak plus a few elementwise passes; tanh is computed through
sigmoid (tanh z = 2 sigmoid(2z) - 1), which this CPU's torch runs about 6x faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.networks import SequenceLSTM


@dataclass
class WindowOutput:
    stream: str
    probabilities: np.ndarray  # float32 [classes]
    frames_in_window: int  # how many frames the label is computed over (W once warm)
    warming: bool  # fewer than W frames since the window (re)started


def _gates_ifo2g(tensor: torch.Tensor) -> torch.Tensor:
    """PyTorch's gate blocks (i, f, g, o) -> (i, f, o, 2g).

    With the g block doubled, one sigmoid covers all four blocks: tanh(z) = 2 sigmoid(2z) - 1.
    Doubling is exact in floating point, and sigmoid is ~6x cheaper than tanh on this CPU.
    """
    i, f, g, o = tensor.chunk(4, dim=0)
    return torch.cat([i, f, o, 2.0 * g], dim=0)


class StaggeredWindows:
    """Exact rolling-window LSTM inference for many streams, one batched step per tick.

    Hidden states live in one pool [rows, W, layers * hidden] and cells in [layers, rows, W, hidden];
    each stream owns a row, so a tick over every stream works on views of the pools, with no
    gathering or copying. Keeping the layers' hidden states side by side means layer k reads
    [h_{k-1}, h_k] as one strided view, multiplied by its stacked [W_ih; W_hh] in one matmul.
    """

    def __init__(self, model: SequenceLSTM, window: int, capacity: int = 16):
        self.window = window
        lstm = model.lstm
        self.layers, self.hidden = lstm.num_layers, lstm.hidden_size
        with torch.no_grad():
            weights = [(_gates_ifo2g(getattr(lstm, f"weight_ih_l{k}")).t().contiguous(),
                        _gates_ifo2g(getattr(lstm, f"weight_hh_l{k}")).t().contiguous(),
                        _gates_ifo2g(getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")))
                       for k in range(self.layers)]
            self._w_ih = [w_ih.detach() for w_ih, _, _ in weights]
            self._w_hh = [w_hh.detach() for _, w_hh, _ in weights]
            # layers above the first read [input, h] through one stacked matrix: one matmul, not two
            self._w_stacked = [torch.cat([w_ih, w_hh], dim=0).detach() for w_ih, w_hh, _ in weights]
            self._bias = [bias.detach() for _, _, bias in weights]
            self._head_w = model.head.weight.detach().t().contiguous()
            self._head_b = model.head.bias.detach()
        self._h = torch.zeros(capacity, window, self.layers * self.hidden)
        self._c = torch.zeros(self.layers, capacity, window, self.hidden)
        self._rows: dict[str, int] = {}  # stream -> row in the pool
        self._names: list[str] = []  # row -> stream, so removing a stream is O(1)
        self._frames: dict[str, int] = {}  # stream -> frames since its window (re)started

    @property
    def streams(self) -> list[str]:
        return list(self._rows)

    def frames_seen(self, stream: str) -> int:
        return self._frames.get(stream, 0)

    def reset(self, stream: str) -> None:
        """Start the stream's window again (a new stream, or a gap in an old one)."""
        if stream not in self._rows:
            if len(self._rows) == self._h.shape[0]:
                self._grow()
            self._rows[stream] = len(self._rows)
            self._names.append(stream)
        # Slots are zeroed lazily, each right before its first frame, so nothing to clear here.
        self._frames[stream] = 0

    def remove(self, stream: str) -> None:
        """Forget a stream; the last row moves into its place so rows stay packed."""
        row = self._rows.pop(stream, None)
        self._frames.pop(stream, None)
        if row is None:
            return
        last = len(self._rows)
        moved = self._names.pop()
        if row != last:
            self._h[row] = self._h[last]
            self._c[:, row] = self._c[:, last]
            self._rows[moved] = row
            self._names[row] = moved

    def _grow(self) -> None:
        self._h = torch.cat([self._h, torch.zeros_like(self._h)], dim=0)
        self._c = torch.cat([self._c, torch.zeros_like(self._c)], dim=1)

    @torch.no_grad()
    def step(self, stream_features: list[tuple[str, np.ndarray]]) -> list[WindowOutput]:
        """Advance each listed stream by one frame (each stream at most once per call)."""
        if not stream_features:
            return []
        names = [name for name, _ in stream_features]
        if len(set(names)) != len(names):
            raise ValueError("step() takes at most one frame per stream; call it again for the next frame")
        for name in names:
            if name not in self._rows:
                self.reset(name)
        # Work in pool-row order: when every stream ticks (the usual case) that is the pool itself.
        order = sorted(range(len(names)), key=lambda i: self._rows[names[i]])
        names = [names[i] for i in order]
        features = [stream_features[i][1] for i in order]
        W, H, L = self.window, self.hidden, self.layers
        rows = [self._rows[name] for name in names]
        frames = [self._frames[name] for name in names]
        S = len(rows)
        every_stream = S == len(self._rows)  # rows are packed 0..n-1 and sorted: exactly the pool's first S
        if every_stream:  # the usual tick: work on the pool in place
            h, c = self._h[:S], self._c[:, :S]
        else:
            index = torch.tensor(rows)
            h, c = self._h.index_select(0, index), self._c.index_select(1, index)
        # Restart the slot whose turn it is: slot n % W begins at the stream's n-th frame.
        stream_index, slot_index = torch.arange(S), torch.tensor([n % W for n in frames])
        h[stream_index, slot_index] = 0.0
        c[:, stream_index, slot_index] = 0.0

        x = torch.from_numpy(np.stack([np.asarray(f, dtype=np.float32) for f in features]))
        h_all = h.view(S * W, L * H)
        for k in range(L):
            c_k = c[k].view(S * W, H)
            if k == 0:  # all W slots see the same frame: project it once, broadcast over slots
                gates = torch.mm(h_all[:, :H], self._w_hh[0])
                gates.view(S, W, 4 * H).add_(torch.addmm(self._bias[0], x, self._w_ih[0]).unsqueeze(1))
            else:  # [h_{k-1} (new), h_k (old)] side by side in the pool: one matmul, no concatenation
                gates = torch.addmm(self._bias[k], h_all[:, (k - 1) * H:(k + 1) * H], self._w_stacked[k])
            gates.sigmoid_()  # i, f, o and s = sigmoid(2 g), so tanh(g) = 2 s - 1
            i, f, o, s = gates.split(H, dim=1)
            c_k.mul_(f).addcmul_(i, s, value=2.0).sub_(i)  # c = f c + i tanh(g)
            torch.mul(c_k, 2.0, out=s)
            s.sigmoid_()  # s = sigmoid(2 c), so tanh(c) = 2 s - 1
            h_k = h_all[:, k * H:(k + 1) * H]
            torch.mul(o, s, out=h_k)
            h_k.mul_(2.0).sub_(o)  # h = o tanh(c) = 2 o s - o
        if not every_stream:
            self._h.index_copy_(0, index, h)
            self._c.index_copy_(1, index, c)

        for name in names:
            self._frames[name] += 1
        done = [n + 1 for n in frames]
        # The oldest running slot: the one started W frames ago once warm, else slot 0.
        output_slot = torch.tensor([n % W if n >= W else 0 for n in done])
        top = h[stream_index, output_slot, (L - 1) * H:]  # [S, hidden]
        probabilities = torch.softmax(torch.addmm(self._head_b, top, self._head_w), dim=-1).numpy()
        outputs = [
            WindowOutput(stream=name, probabilities=probabilities[index_], frames_in_window=min(n, W),
                         warming=n < W)
            for index_, (name, n) in enumerate(zip(names, done))
        ]
        # Back in the caller's order.
        in_order: list[WindowOutput] = [None] * S  # type: ignore[list-item]
        for position, original in enumerate(order):
            in_order[original] = outputs[position]
        return in_order


@torch.no_grad()
def offline_window_probabilities(model: SequenceLSTM, features: np.ndarray, window: int) -> np.ndarray:
    """Reference: for each frame t, the model run from zero state on frames max(0, t-W+1)..t.

    [T, dim] -> [T, classes]. This is the recomputing way the staggered windows must equal.
    """
    model.eval()
    rows = []
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    for t in range(len(x)):
        sequence = x[max(0, t - window + 1): t + 1].unsqueeze(0)
        rows.append(torch.exp(model(sequence))[0])
    return torch.stack(rows).numpy()


@torch.no_grad()
def window_probabilities(model: torch.nn.Module, features: torch.Tensor, window: int,
                         chunk: int = 512) -> torch.Tensor:
    """Probabilities [n, classes] of every full window (stride 1); one window of the whole video if shorter."""
    if len(features) < window:
        return torch.exp(model(features.unsqueeze(0)))
    windows = features.unfold(0, window, 1).permute(0, 2, 1)  # [n, window, 512]
    return torch.cat([torch.exp(model(windows[i:i + chunk].contiguous())) for i in range(0, len(windows), chunk)])
