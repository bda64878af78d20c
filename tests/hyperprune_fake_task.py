"""A stand-in task for the search's tests: no training, results are functions of the sampled values.

The validation loss grows with the death rate and falls with the epochs; the spectrum is ``[-rate, -2 rate]``
(the dense one ``[0, 0]``), so both objectives rank low death rates first. Every training is appended to a log
file (one JSON line: the values, the epochs, the process id), so a test can count what was trained where.
``make`` is the factory the command line calls; its options choose failures, a kill or an interrupt.
"""
import json
import os
import time

import torch

from compress.search import TaskResult


def death_rate(schedule):
    return (schedule or {}).get("pruners", {}).get("p", {}).get("death_rate", 0.0)   # the dense reference: 0


class FakeTask:
    def __init__(self, log=None, fail_rate=None, kill_at=None, interrupt_at=None, sleep=0.0):
        self.log, self.fail_rate, self.kill_at, self.interrupt_at, self.sleep = (log, fail_rate, kill_at,
                                                                                interrupt_at, sleep)
        self.calls = []

    def train(self, schedule, epochs, control):
        rate = death_rate(schedule)
        self.calls.append((rate, epochs))
        count = self._record(rate, epochs)
        if self.kill_at is not None and count == self.kill_at:
            time.sleep(self.sleep)
            os._exit(9)   # a killed worker: no cleanup at all
        if self.interrupt_at is not None and count == self.interrupt_at:
            raise KeyboardInterrupt
        if self.fail_rate is not None and abs(rate - self.fail_rate) < 1e-9:
            raise RuntimeError(f"cannot train at death rate {rate}")
        model = torch.nn.Linear(1, 1)
        with torch.no_grad():
            model.weight.fill_(rate)
        for epoch in range(epochs):
            time.sleep(self.sleep / max(1, epochs))
            control.epoch_done(epoch, model, 1.0 + rate + 1.0 / (epoch + 1))
        return TaskResult(model, 1.0 + rate + 1.0 / epochs, metrics={"test_loss": 1.1 + rate + 1.0 / epochs})

    def spectrum(self, model):
        rate = model.weight.detach().item()
        return torch.tensor([-rate, -2 * rate])

    def _record(self, rate, epochs):
        if self.log is None:
            return len(self.calls)
        with open(self.log, "a") as f:
            f.write(json.dumps({"rate": rate, "epochs": epochs, "pid": os.getpid()}) + "\n")
        with open(self.log) as f:
            return sum(1 for _ in f)


def make(data, device, **options):
    """The command line's factory. ``FAKE_TASK_KILL_AT=n`` kills the process in its n-th training (so that the
    rerun is the same command); ``FAKE_TASK_BARRIER=folder:n`` waits until n processes have started."""
    barrier = os.environ.get("FAKE_TASK_BARRIER")
    if barrier:
        folder, count = barrier.rsplit(":", 1)
        open(os.path.join(folder, f"started.{os.getpid()}"), "w").close()
        deadline = time.time() + 120
        while len([f for f in os.listdir(folder) if f.startswith("started.")]) < int(count) and time.time() < deadline:
            time.sleep(0.05)
    kill_at = os.environ.get("FAKE_TASK_KILL_AT")
    return FakeTask(kill_at=int(kill_at) if kill_at else None, **options)


def space_yaml(pool=4, rates=(0.2, 0.4, 0.6, 0.8), objective="ls_distance", final_epochs=3, seed=3):
    """A space file's text over the death rate of a one-pruner schedule."""
    return f"""
schedule:
  pruners:
    p: {{class: SelfishRNNPruner, density: 0.5, death_rate: 0.5}}
  policies:
    - {{pruner: {{instance_name: p}}, starting_epoch: 0, ending_epoch: 10}}
objective: {objective}
pool: {pool}
pool_epochs: 1
round_epochs: 1
final_epochs: {final_epochs}
seed: {seed}
startup_trials: 2
space:
  pruners.p.death_rate: {list(rates)}
"""
