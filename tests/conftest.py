import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests run on small CPUs next to other work: keep torch to one thread and a fixed seed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def texture_kinds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of the synthetic generators' textures, in drawing order (a list to clear and read)."""
    from bas.data import synthetic

    kinds: list[str] = []
    sample_texture = synthetic._Texture.sample

    def recording(rng, size: int, kind: str):
        kinds.append(kind)
        return sample_texture(rng, size, kind)

    monkeypatch.setattr(synthetic._Texture, "sample", staticmethod(recording))
    return kinds
