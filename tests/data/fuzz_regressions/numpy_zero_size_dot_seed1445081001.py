def program(a0, a1):
    v0 = np.exp(a0)
    v1 = np.dot(a0, a1)
    v2 = ~v1
    return v2
