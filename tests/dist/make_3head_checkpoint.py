# A 3-head variant of tests/data/parity/weights_tiny.safetensors (dim 48 instead of 32, random F32 weights) that
# carries its config in __metadata__, for the layout checks against the loaded model. Usage: SRC DST
import json, random, struct, sys
src, dst = sys.argv[1:3]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
meta = h.pop('__metadata__')
cfg = json.loads(meta['config'])
cfg.update(dim=48, num_heads=3)
rng = random.Random(7)
out, data = {}, b''
for name in sorted(h):
    shape = [48 if s == 32 else 288 if s == 192 else s for s in h[name]['shape']]
    if name.endswith('text_embedding.0.weight'):
        shape[1] = 32  # text_dim stays
    count = 1
    for s in shape:
        count *= s
    fan = shape[-1] if len(shape) > 1 else 1
    vals = [(1.0 if name.endswith('norm_q.weight') or name.endswith('norm_k.weight') or name.endswith('norm3.weight') else 0.0)
            + rng.uniform(-1, 1) / fan ** 0.5 * (0.1 if len(shape) == 1 else 1) for _ in range(count)]
    raw = struct.pack(f'<{count}f', *vals)
    out[name] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
    data += raw
out['__metadata__'] = {'config': json.dumps(cfg)}
head = json.dumps(out).encode()
head += b' ' * (-len(head) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(head)) + head + data)
