"""Whole models under torch.compile(backend=hlojit) in inference (no_grad), against eager."""

from __future__ import annotations

from tests.torch_backend import MLP, F, SmallCNN, TransformerBlock, check_against_eager, nn, torch


class ResidualCNN(nn.Module):
    """conv + batch norm (eval) + residual + adaptive average pool: a tiny ResNet stage."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(8)
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.norm(self.stem(x)))
        x = x + self.branch(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class TinyLanguageModel(nn.Module):
    """Embedding -> transformer block -> tied-vocabulary logits -> log-probabilities."""

    def __init__(self, vocabulary: int = 20, width: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(torch.randn(8, width) * 0.1)
        self.block = TransformerBlock(width)
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens):
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        x = self.norm(self.block(x))
        return (x @ self.embed.weight.t()).log_softmax(-1)


def _eval(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for parameter in model.parameters():
        parameter.data.normal_(0, 0.3)
    for buffer_name, buffer in model.named_buffers():
        if buffer_name.endswith("running_var"):
            buffer.uniform_(0.5, 1.5)
        elif buffer_name.endswith("running_mean"):
            buffer.normal_(0, 0.1)
    return model.eval()


def test_mlp():
    check_against_eager(_eval(MLP()), torch.randn(7, 8))


def test_cnn():
    check_against_eager(_eval(SmallCNN()), torch.randn(3, 1, 8, 8), rtol=1e-4, atol=1e-5)


def test_transformer_block():
    check_against_eager(_eval(TransformerBlock()), torch.randn(2, 5, 16), rtol=1e-4, atol=1e-5)


def test_residual_cnn_with_batch_norm():
    check_against_eager(_eval(ResidualCNN()), torch.randn(2, 3, 9, 9), rtol=1e-4, atol=1e-5)


def test_tiny_language_model():
    tokens = torch.tensor([[1, 5, 19, 3, 3], [0, 2, 4, 6, 8]])
    check_against_eager(_eval(TinyLanguageModel()), tokens, rtol=1e-4, atol=1e-5)
