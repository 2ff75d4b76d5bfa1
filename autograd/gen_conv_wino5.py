#!/usr/bin/env python3
"""Generates autograd/conv_wino5_tables.h: the Winograd F(4x4, 5x5) transforms (docs/conv.md,
"Winograd for the 5x5 layers").

usage: python3 autograd/gen_conv_wino5.py > autograd/conv_wino5_tables.h

1-D correlation y_i = sum_k g_k d_{i+k} (i < 4, k < 5) from 8 inputs, by Toom-Cook on the
points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity: y = AT ((G g) * (BT d)). AT and G follow from the
points (AT[i][j] = p_j^i, G[j][k] = p_j^k / prod_{l != j} (p_j - p_l), the point at infinity
picks the leading coefficients); BT is then the unique solution of the bilinear identity, found
with exact rational arithmetic and checked on random integers. AT and BT hold dyadic rationals
(exact in float); G is applied to the weights in double precision.
"""
from fractions import Fraction as F
import random

M, R = 4, 5
A = M + R - 1
PTS = [F(0), F(1), F(-1), F(2), F(-2), F(1, 2), F(-1, 2)]


def solve(rows_a, rhs):
    n = len(rows_a[0])
    rows = [r[:] + [b] for r, b in zip(rows_a, rhs)]
    piv, r = [], 0
    for c in range(n):
        p = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if p is None:
            continue
        rows[r], rows[p] = rows[p], rows[r]
        pv = rows[r][c]
        rows[r] = [v / pv for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c] != 0:
                f = rows[i][c]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        piv.append(c)
        r += 1
    assert all(rows[i][n] == 0 for i in range(r, len(rows))), "inconsistent system"
    x = [F(0)] * n
    for i, c in enumerate(piv):
        x[c] = rows[i][n]
    return x


AT = [[PTS[j] ** i for j in range(A - 1)] + [F(1 if i == M - 1 else 0)] for i in range(M)]
G = []
for j in range(A - 1):
    n = F(1)
    for l in range(A - 1):
        if l != j:
            n *= PTS[j] - PTS[l]
    G.append([PTS[j] ** k / n for k in range(R)])
G.append([F(1 if k == R - 1 else 0) for k in range(R)])
BT = [[None] * A for _ in range(A)]
for l in range(A):
    eqs, rhs = [], []
    for i in range(M):
        for k in range(R):
            eqs.append([AT[i][j] * G[j][k] for j in range(A)])
            rhs.append(F(1 if l == i + k else 0))
    for j, v in enumerate(solve(eqs, rhs)):
        BT[j][l] = v

for _ in range(20):
    g = [F(random.randint(-9, 9)) for _ in range(R)]
    d = [F(random.randint(-9, 9)) for _ in range(A)]
    gg = [sum(G[j][k] * g[k] for k in range(R)) for j in range(A)]
    bd = [sum(BT[j][l] * d[l] for l in range(A)) for j in range(A)]
    y = [sum(AT[i][j] * gg[j] * bd[j] for j in range(A)) for i in range(M)]
    assert y == [sum(g[k] * d[i + k] for k in range(R)) for i in range(M)]


def cnum(f):
    s = repr(float(f))
    return s + "f"


def term_list(coefs, name):
    """terms c * name(l) of a linear form, skipping zeros and writing +-1 as signs"""
    terms = []
    for l, c in coefs:
        v = "%s(%d)" % (name, l) if isinstance(l, int) else l
        if c == 0:
            continue
        if c == 1:
            terms.append(("+", v))
        elif c == -1:
            terms.append(("-", v))
        else:
            terms.append(("+" if c > 0 else "-", "%s * %s" % (cnum(abs(c)), v)))
    expr = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    for sgn, t in terms[1:]:
        expr += " %s %s" % (sgn, t)
    return expr


PAIRS = [(1, 2), (3, 4), (5, 6)]  # the points p and -p


def bt_body(mat):
    """OUT = BT IN; the rows of a pair differ in the sign of the odd columns, so each pair is
    (even part) +- (odd part)"""
    lines = []
    for i in range(A):
        if any(i == b for _, b in PAIRS):
            continue
        pair = next((b for a, b in PAIRS if a == i), None)
        if pair is None:
            lines.append("OUT(%d) = %s;" % (i, term_list(list(enumerate(mat[i])), "IN")))
            continue
        assert all(mat[pair][l] == (-1) ** l * mat[i][l] for l in range(A))
        ev = term_list([(l, mat[i][l]) for l in range(0, A, 2)], "IN")
        od = term_list([(l, mat[i][l]) for l in range(1, A, 2)], "IN")
        lines.append("{ const VF e_ = %s, o_ = %s; OUT(%d) = e_ + o_; OUT(%d) = e_ - o_; }"
                     % (ev, od, i, pair))
    return lines


def at_body(mat):
    """OUT = AT IN; the columns of a pair differ in sign on the odd rows, so each row takes the
    pair's sum (even rows) or difference (odd rows)"""
    lines = ["const VF " + ", ".join("s%d_ = IN(%d) + IN(%d), d%d_ = IN(%d) - IN(%d)"
                                     % (a, a, b, a, a, b) for a, b in PAIRS) + ";"]
    for a, b in PAIRS:
        assert all(mat[i][b] == (-1) ** i * mat[i][a] for i in range(M))
    for i in range(M):
        coefs = [(0, mat[i][0])]
        for a, b in PAIRS:
            coefs.append((("s%d_" if i % 2 == 0 else "d%d_") % a, mat[i][a]))
        coefs.append((A - 1, mat[i][A - 1]))
        lines.append("OUT(%d) = %s;" % (i, term_list(coefs, "IN")))
    return lines


def a_body(mat):
    """OUT = A IN = AT^T IN (8 outputs from 4): the points p and -p share the even part
    (IN(0) + p^2 IN(2)) and the odd part (p IN(1) + p^3 IN(3))"""
    lines = []
    for i in range(A):
        if any(i == b for _, b in PAIRS):
            continue
        col = [mat[r][i] for r in range(M)]
        pair = next((b for a, b in PAIRS if a == i), None)
        if pair is None:
            lines.append("OUT(%d) = %s;" % (i, term_list(list(enumerate(col)), "IN")))
            continue
        assert all(mat[r][pair] == (-1) ** r * col[r] for r in range(M))
        ev = term_list([(r, col[r]) for r in range(0, M, 2)], "IN")
        od = term_list([(r, col[r]) for r in range(1, M, 2)], "IN")
        lines.append("{ const VF e_ = %s, o_ = %s; OUT(%d) = e_ + o_; OUT(%d) = e_ - o_; }"
                     % (ev, od, i, pair))
    return lines


def macro(name, lines):
    return "#define %s \\\n" % name + " \\\n".join("    " + l for l in lines) + "\n"


print("/* Generated by autograd/gen_conv_wino5.py: do not edit. Winograd F(4x4, 5x5) on the points")
print(" * 0, 1, -1, 2, -2, 1/2, -1/2, infinity (docs/conv.md). */")
print("#ifndef BL_CONV_WINO5_TABLES_H\n#define BL_CONV_WINO5_TABLES_H\n")
print("#define WINO5_M %d /* output tile */\n#define WINO5_A %d /* input tile */\n" % (M, A))
print("/* G (A x 5): U = G w G^T, applied in double precision */")
print("static const double wino5_G[%d][%d] = {" % (A, R))
for row in G:
    print("    {" + ", ".join("%d.0 / %d.0" % (f.numerator, f.denominator) for f in row) + "},")
print("};\n")
print("/* OUT(i) = sum_l BT[i][l] IN(l), i, l < 8: the input transform along one axis (VF: the")
print(" * includer's vector type) */")
print(macro("WINO5_BT_1D", bt_body(BT)))
print("/* OUT(i) = sum_j AT[i][j] IN(j), i < 4, j < 8: the output transform along one axis */")
print(macro("WINO5_AT_1D", at_body(AT)))
print("/* OUT(j) = sum_i AT[i][j] IN(i), j < 8, i < 4: the output gradient's transform along one axis")
print(" * (the weight gradient: dU = sum over tiles of (A dy A^T) * (BT x B)) */")
print(macro("WINO5_A_1D", a_body(AT)))
print("#endif")
