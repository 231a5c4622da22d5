"""Gradient caching: the loss of a whole large batch with the activation memory of one forward chunk.

The idea is that of GradCache (Luyu Gao, Yunyi Zhang, Jiawei Han and Jamie Callan, "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup", RepL4NLP 2021, arXiv:2101.06983). The loss depends on the
model only through the batch's embeddings, so:

1. embed every chunk without autograd and keep only the embeddings, `[batch, dim]`;
2. compute the loss on all embeddings at once and its gradient with respect to them;
3. run each chunk forward again, this time with autograd, and back-propagate that chunk's rows of the
   embedding gradient into the model.

The parameter gradients equal those of one forward and backward pass over the batch, because step 3 is the
chain rule applied chunk by chunk. Dropout masks match too, because each chunk's random number generator
state is recorded before its first pass and restored before the second. The state after the first pass is
restored at the end, so later random draws are those of the uncached computation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from accelerate import Accelerator

from isotune.tokens import TokenCache
from isotune.training.embedding import batch_chunks, embed_chunk, restore_order


@dataclass
class RngState:
    """The CPU generator state, plus the CUDA generator state of the training device when it is a GPU."""

    cpu: torch.Tensor
    cuda: torch.Tensor | None
    device: torch.device

    @classmethod
    def capture(cls, device: torch.device) -> RngState:
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(cpu=torch.get_rng_state(), cuda=cuda, device=device)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


class CachedEmbeddings:
    """The first, gradient-free pass over a batch, and the replay that turns an embedding gradient into
    parameter gradients.

    `embeddings` is a `[len(texts), dim]` float32 leaf tensor that requires grad: compute the loss from it,
    take the gradient with respect to it, then call `backward` with that gradient.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        texts: list[str],
        chunk_size: int,
        tokens: TokenCache | None = None,
    ) -> None:
        self.texts = texts
        self.chunks, self.tokens = batch_chunks(accelerator.unwrap_model(model), texts, chunk_size, tokens)
        # NOTE: only the CPU and CUDA generators are replayed. On other accelerators (MPS, XPU) the second pass
        # draws other dropout masks than the first, so the gradients are those of slightly different masks.
        self.chunk_states: list[RngState] = []
        pieces = []
        with torch.no_grad():
            for rows in self.chunks:
                self.chunk_states.append(RngState.capture(accelerator.device))
                pieces.append(embed_chunk(accelerator, model, [texts[i] for i in rows], self.tokens).float())
        self.final_state = RngState.capture(accelerator.device)
        self.embeddings = restore_order(pieces, self.chunks).requires_grad_(True)

    def backward(self, accelerator: Accelerator, model: torch.nn.Module, embedding_grad: torch.Tensor) -> None:
        """Re-run each chunk with autograd and back-propagate its rows of `embedding_grad` into the model.

        Goes through `accelerator.backward` once per chunk, with `sum(embeddings * embedding_grad)` as the
        scalar, so loss scaling (fp16) and the division by the gradient accumulation steps apply as in the
        uncached loop. Under DDP or FSDP every chunk but the last runs inside `no_sync`, so gradients are
        all-reduced once per batch.
        """
        embedding_grad = embedding_grad.detach()
        for index, (rows, state) in enumerate(zip(self.chunks, self.chunk_states, strict=True)):
            state.restore()
            last = index == len(self.chunks) - 1
            sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
            with sync:
                chunk = embed_chunk(accelerator, model, [self.texts[i] for i in rows], self.tokens)  # [len(rows), dim]
                grad = embedding_grad[torch.tensor(rows, device=embedding_grad.device)]
                accelerator.backward((chunk.float() * grad).sum())
        self.final_state.restore()
