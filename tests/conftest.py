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
