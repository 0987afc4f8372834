"""Plain-Python oracles of the authors' environments, transcribed entity by entity from their code.

These follow hepengli/multiagent-particle-envs (openai MPE ``core.py`` + ``scenarios/simple_spread.py`` for
navigation; ``new_core.py`` + ``scenarios/collector.py`` at the MATRPO commits for treasure collection) in the
structure of that code (lists of 2-vectors, per-entity loops, ``sorted`` of (distance, index) tuples), not the
structure of our kernels, so that they are an independent check of the "paper" variant.
"""

from __future__ import annotations

import numpy as np

DT, DAMPING, CF, MARGIN = 0.1, 0.25, 100.0, 1e-3


def direction(action, continuous):
    """Control direction of one agent (mpe2 layout for continuous actions, float32 arithmetic)."""
    u = np.zeros(2)
    if continuous:
        a = np.clip(np.asarray(action, dtype=np.float32), np.float32(0), np.float32(1))
        u[0] += a[2] - a[1]
        u[1] += a[4] - a[3]
    else:
        if action == 1:
            u[0] = -1.0
        if action == 2:
            u[0] = +1.0
        if action == 3:
            u[1] = -1.0
        if action == 4:
            u[1] = +1.0
    return u


class ReferenceNavigation:
    """The authors' modified simple_spread on openai MPE physics (velocity, then position)."""

    def __init__(self, pos, vel, landmarks):
        self.p = [np.array(x, dtype=float) for x in pos]
        self.v = [np.array(x, dtype=float) for x in vel]
        self.lm = [np.array(x, dtype=float) for x in landmarks]
        self.n = len(self.p)

    def is_collision(self, a, b):
        delta = self.p[a] - self.p[b]
        return np.sqrt(np.sum(np.square(delta))) < 0.15 + 0.15

    def step(self, actions, continuous=False):
        force = [direction(a, continuous) * 5.0 for a in actions]
        for a in range(self.n):
            for b in range(self.n):
                if b <= a:
                    continue
                delta = self.p[a] - self.p[b]
                dist = np.sqrt(np.sum(np.square(delta)))
                pen = np.logaddexp(0, -(dist - 0.3) / MARGIN) * MARGIN
                f = CF * delta / dist * pen
                force[a] = f + force[a]
                force[b] = -f + force[b]
        for i in range(self.n):
            self.v[i] = self.v[i] * (1 - DAMPING)
            self.v[i] += (force[i] / 1.0) * DT
            self.p[i] += self.v[i] * DT
        proximity = 0.0
        for lm in self.lm:
            proximity -= min(np.sqrt(np.sum(np.square(p - lm))) for p in self.p)
        private = []
        for i in range(self.n):
            rew = proximity if i == 0 else 0.0
            rew += sum(-1.0 * self.is_collision(a, i) for a in range(self.n) if a != i)
            private.append(rew)
        obs = []
        for i in range(self.n):
            parts = [self.v[i], self.p[i]] + [lm - self.p[i] for lm in self.lm]
            parts += [self.p[k] - self.p[i] for k in range(self.n) if k != i]
            obs.append(np.concatenate(parts).astype(np.float32))
        return obs, private


class ReferenceCollector:
    """The authors' ``collector.py`` (per-agent rewards) on ``new_core`` (mass-scaled forces, cached distances).

    Respawns draw three numbers (x, y, type) from ``uniforms`` in treasure order, as our engine does.
    """

    def __init__(self, pos, vel, hold, tpos, ttype, talive, n_hunters, n_types, uniforms):
        self.H, self.K = n_hunters, n_types
        self.p = [np.array(x, dtype=float) for x in pos]
        self.v = [np.array(x, dtype=float) for x in vel]
        self.N = len(self.p)
        self.hold = [None if h < 0 else int(h) for h in hold[: self.H]]
        self.tp = [np.array(x, dtype=float) for x in tpos]
        self.tt = [int(k) for k in ttype]
        self.alive = [bool(a) for a in talive]
        self.size = [0.05] * self.H + [0.075] * (self.N - self.H)
        self.mass = [1.0] * self.H + [2.25] * (self.N - self.H)
        self.d_i = [None] * self.H + list(range(self.N - self.H))
        self.u = list(uniforms)
        self.calculate_distances()

    def calculate_distances(self):
        # entities: agents then treasures; cached_dist_vect[a, b] = p_a - p_b
        ents = self.p + self.tp
        n = len(ents)
        self.vect = np.zeros((n, n, 2))
        for a in range(n):
            for b in range(a + 1, n):
                delta = ents[a] - ents[b]
                self.vect[a, b] = delta
                self.vect[b, a] = -delta
        self.mag = np.linalg.norm(self.vect, axis=2)

    def touching(self, a, b, size_a, size_b):
        return self.mag[a, b] < size_a + size_b

    def step(self, actions, continuous=False):
        N = self.N
        force = [(self.mass[i] * 1.5) * (direction(a, continuous) * 1.5) for i, a in enumerate(actions)]
        for a in range(N):
            for b in range(a + 1, N):
                delta = self.vect[a, b]
                dist = self.mag[a, b]
                pen = np.logaddexp(0, -(dist - (self.size[a] + self.size[b])) / MARGIN) * MARGIN
                f = CF * delta / dist * pen
                ratio = self.mass[b] / self.mass[a]
                force[a] = ratio * f + force[a]
                force[b] = -(1 / ratio) * f + force[b]
        for i in range(N):
            self.v[i] = self.v[i] * (1 - DAMPING)
            self.v[i] += (force[i] / self.mass[i]) * DT
            speed = np.sqrt(np.square(self.v[i][0]) + np.square(self.v[i][1]))
            if speed > 1.0:
                self.v[i] = self.v[i] / np.sqrt(np.square(self.v[i][0]) + np.square(self.v[i][1])) * 1.0
            self.p[i] += self.v[i] * DT
        self.calculate_distances()
        rewards = self.rewards()
        obs = [self.observation(i) for i in range(N)]
        self.post_step()
        return obs, rewards

    def t_index(self, k):
        return self.N + k

    def rewards(self):
        H, N = self.H, self.N
        gd = 0
        for d in range(H, N):
            gd += 5 * sum(
                self.touching(d, c, self.size[d], self.size[c]) for c in range(H) if self.hold[c] == self.d_i[d]
            )
        gc = 0
        for k in range(len(self.tp)):
            if self.alive[k]:
                gc += 5 * sum(
                    self.touching(c, self.t_index(k), self.size[c], 0.025) for c in range(H) if self.hold[c] is None
                )
        g = gd + gc
        out = []
        for c in range(H):
            out.append(0 - 5 * sum(self.touching(c, a, self.size[c], self.size[a]) for a in range(H) if a != c))
        for d in range(H, N):
            rew = 0
            holders = [self.mag[d, c] for c in range(H) if self.hold[c] == self.d_i[d]]
            if holders:
                rew -= 0.1 * min(holders)
            else:
                rew -= 0.1 * np.linalg.norm(self.vect[list(range(H)), d].mean(axis=0))
            rew += gd
            for c in range(H):
                if self.hold[c] is None:
                    dists = [self.mag[self.t_index(k), c] for k in range(len(self.tp)) if self.alive[k]]
                    rew -= 0.1 * (min(dists) if dists else 0.0)
                else:
                    rew -= 0.1 * min(self.mag[c, b] for b in range(H, N) if self.d_i[b] == self.hold[c])
                rew += g
            out.append(rew)
        return out

    def encoding(self, j):
        K = self.K
        if j < self.H:
            return np.concatenate([np.zeros(K), (np.arange(K) == self.hold[j]).astype(float)])
        return np.concatenate([(np.arange(K) == self.d_i[j]).astype(float), np.zeros(K)])

    def observation(self, i):
        K = self.K
        others = [j for j in range(self.N) if j != i]
        closest = sorted(zip(self.mag[others, i], others))
        treasures = [self.t_index(k) for k in range(len(self.tp))]
        closest_t = sorted(zip(self.mag[treasures, i], treasures))
        obs = [self.p[i], self.v[i]]
        if i < self.H:
            obs.append((np.arange(K) == self.hold[i]).astype(float))
        for _, j in closest:
            obs += [self.vect[j, i], self.v[j], self.encoding(j)]
        for _, e in closest_t:
            k = e - self.N
            obs += [self.vect[e, i], (np.arange(K) == self.tt[k]).astype(float)]
        return np.concatenate(obs).astype(np.float32)

    def post_step(self):
        H, N = self.H, self.N
        for k in range(len(self.tp)):
            if self.alive[k]:
                for c in range(H):
                    if self.hold[c] is None and self.touching(self.t_index(k), c, 0.025, self.size[c]):
                        self.alive[k] = False
                        self.hold[c] = self.tt[k]
                        self.tp[k] = np.array([-0.0, -0.0])
                        break
            else:
                x, y, kind = self.u.pop(0), self.u.pop(0), self.u.pop(0)
                self.tp[k] = np.array([-0.95 + 1.9 * x, -0.95 + 1.9 * y])
                self.tt[k] = min(int(kind * self.K), self.K - 1)
                self.alive[k] = True
        for c in range(H):
            if self.hold[c] is not None:
                for d in range(H, N):
                    if self.d_i[d] == self.hold[c] and self.touching(c, d, self.size[c], self.size[d]):
                        self.hold[c] = None
                        break


def greedy_treasure_actions(pos, hold, tpos, talive, n_hunters, btype):
    """Discrete actions that send hunters to treasures / their bank and banks to their carriers."""
    n = pos.shape[0]
    actions = np.zeros(n, dtype=np.int64)
    for i in range(n):
        target = None
        if i < n_hunters:
            if hold[i] < 0:
                cand = [tpos[k] for k in range(len(tpos)) if talive[k]]
            else:
                cand = [pos[d] for d in range(n_hunters, n) if btype[d] == hold[i]]
        else:
            cand = [pos[c] for c in range(n_hunters) if hold[c] == btype[i]]
        if cand:
            target = min(cand, key=lambda x: np.linalg.norm(x - pos[i]))
        if target is None:
            continue
        dx, dy = target - pos[i]
        if abs(dx) > abs(dy):
            actions[i] = 2 if dx > 0 else 1
        else:
            actions[i] = 4 if dy > 0 else 3
    return actions
