def program(a0, a1):
    v0 = np.trunc(a1)
    v1 = a0 ** 2
    return v1
