/* CRC-32 and the K=7 rate-1/2 convolutional code of the frame header (reference:
 * testbed/phy/fec.py). Soft values: bit 0 -> +1, bit 1 -> -1. */
#ifndef INCLUDED_TESTBEDPHY_FEC_H
#define INCLUDED_TESTBEDPHY_FEC_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gr {
namespace testbedphy {
namespace fec {

constexpr int K = 7;
constexpr int N_STATES = 1 << (K - 1);

uint32_t crc32(const uint8_t* data, size_t n);
/* rate-1/2 code with K-1 zero tail bits: 2*(bits+K-1) output bits */
std::vector<uint8_t> conv_encode(const std::vector<uint8_t>& bits);
/* soft-decision Viterbi for conv_encode; soft has 2*(n_bits+K-1) values; terminated in state 0 */
std::vector<uint8_t> viterbi_decode(const double* soft, int n_bits);
int coded_length(int n_bits, int repetition);
/* de-interleave (perm: position of each coded value), combine the copies, Viterbi */
std::vector<uint8_t> decode_soft(const double* soft, int n_bits, int repetition, const std::vector<int>& perm);
/* bits -> BPSK values: code, repetition copies, interleaving */
std::vector<float> encode_bits(const std::vector<uint8_t>& bits, int repetition, const std::vector<int>& perm);
std::vector<uint8_t> bytes_to_bits(const std::vector<uint8_t>& bytes);
std::vector<uint8_t> bits_to_bytes(const std::vector<uint8_t>& bits);

} // namespace fec
} // namespace testbedphy
} // namespace gr

#endif
