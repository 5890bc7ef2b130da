// A small seeded generator (xoshiro128**, seeded by splitmix32): the same seed gives the same stream.

export function seededRandom(seed: number, stream = 0): () => number {
  let x = (seed ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0;
  let hi = Math.floor(seed / 2 ** 32) >>> 0;
  const split = () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x ^ hi;
    hi = (hi + 0x6d2b79f5) >>> 0;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(), b = split(), c = split(), d = split();
  if ((a | b | c | d) === 0) a = 1;
  return () => {
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return r / 4294967296;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
