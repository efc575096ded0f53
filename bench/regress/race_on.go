//go:build race

package regress

// raceBuild tells whether the test runs with -race, which moves the ratios (the test's own side
// is slowed): its references are kept apart.
const raceBuild = true
