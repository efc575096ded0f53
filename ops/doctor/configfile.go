package doctor

import (
	"github.com/storeedge/storeedge/internal/config"
)

// checkConfigFile checks who may read and change the configuration file: it may hold secrets,
// and whoever changes it decides where the server sends the shop's data.
func checkConfigFile(path string, cfg config.Config, account string) []Result {
	res := checkConfigFileAccess(path, cfg, account)
	if r, ok := checkServiceCanRead(path, account); ok {
		res = append(res, r)
	}
	return res
}

// checkConfigFileAccess checks that nobody but administrators and the service (account, "" when
// unknown) may read or change the file.
func checkConfigFileAccess(path string, cfg config.Config, account string) []Result {
	if path == "" {
		return []Result{pass("config", "configuration file", "none: built-in defaults, environment and --set only")}
	}
	check := "configuration file " + path
	secrets := secretsInFile(path)
	problem, fix, err := filePermissionProblem(path, len(secrets) > 0, account)
	switch {
	case err != nil:
		return []Result{warn("config", check, "permissions cannot be read: "+err.Error(), "check by hand that only administrators and the service account can read it")}
	case problem != "" && (len(secrets) > 0 || fix.fail):
		return []Result{fail("config", check, problem+holdsSecrets(secrets), fix.text)}
	case problem != "":
		return []Result{warn("config", check, problem+"; it holds no secret now, but keep it closed before one is added", fix.text)}
	}
	return []Result{pass("config", check, "readable by administrators and the service only"+holdsSecrets(secrets))}
}

// permFix is the fix for a permission problem, and whether it fails the check even without
// secrets (anyone may change the file).
type permFix struct {
	text string
	fail bool
}

func holdsSecrets(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	s := "; it holds secrets ("
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += k
	}
	return s + ")"
}

// secretsInFile lists the secret keys the file itself sets (the environment's are not in it).
func secretsInFile(path string) []string {
	c, _ := config.Load(path, nil, nil) // validation problems are storeedge config's to report
	keys := c.SecretsSet()
	sortStrings(keys)
	return keys
}
