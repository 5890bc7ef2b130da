// The rounding kernels/mmvq.cu applies to the activations of a quantized layer before its integer dot products:
// each group of 32 values of a row becomes d * q with d = max|x| / 127 and q = round(x / d) in [-127, 127] (ggml's
// q8_1). The GPU's quantized GEMV computes exactly the linear layer over these rounded rows, so the tests check it
// against the CPU backend's linear over roundToQ8(x), and separately how far that lies from the linear over x.
const f = Math.fround;

/** x [rows, K] (K a multiple of 32) with every group of 32 values rounded to int8 as kernels/mmvq.cu does. */
export function roundToQ8(x: Float32Array, K: number): Float32Array {
  if (K % 32 !== 0) throw new Error(`internal: int8 groups of 32 need K % 32 == 0, got ${K}`);
  const out = new Float32Array(x.length);
  for (let g = 0; g < x.length; g += 32) {
    let amax = 0;
    for (let e = 0; e < 32; e++) amax = Math.max(amax, Math.abs(x[g + e]));
    const d = f(amax / 127), id = d > 0 ? f(1 / d) : 0;
    for (let e = 0; e < 32; e++) {
      const y = f(x[g + e] * id);
      out[g + e] = f(d * Math.sign(y) * Math.round(Math.abs(y))); // roundf: halves away from zero
    }
  }
  return out;
}
