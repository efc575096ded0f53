package doctor

import "slices"

// ace is one "access allowed" entry of a Windows access list: a SID and its access mask.
type ace struct {
	sid  string
	mask uint32
}

// Well-known SIDs of groups that take in every user of the machine.
var broadSIDs = map[string]string{
	"S-1-1-0":      "Everyone",
	"S-1-5-11":     "Authenticated Users",
	"S-1-5-32-545": "Users",
}

// Access mask bits (winnt.h) that read or change a file's content.
const (
	fileReadData  = 0x0001
	fileWriteData = 0x0002
	fileAppend    = 0x0004
	genericRead   = 0x80000000
	genericWrite  = 0x40000000
	genericAll    = 0x10000000
	// Rights that hand over control as surely as writing: delete (a folder's children, or the
	// object), change the permissions, take ownership.
	fileDeleteChild = 0x0040
	deleteAccess    = 0x00010000
	writeDAC        = 0x00040000
	writeOwner      = 0x00080000
	changeMask      = fileWriteData | fileAppend | genericWrite | genericAll | fileDeleteChild | deleteAccess | writeDAC | writeOwner
)

// broadAccess names the broad groups that the entries let read, and those they let change, a
// file. It is the logic of the Windows check, kept here so that it is tested everywhere.
func broadAccess(aces []ace) (read, write []string) {
	for _, a := range aces {
		name, ok := broadSIDs[a.sid]
		if !ok {
			continue
		}
		if a.mask&changeMask != 0 && !slices.Contains(write, name) {
			write = append(write, name)
		}
		if a.mask&(fileReadData|genericRead|genericAll) != 0 && !slices.Contains(read, name) {
			read = append(read, name)
		}
	}
	return read, write
}

func sortStrings(s []string) { slices.Sort(s) }
