package orders

import "time"

// The stages of an order's ledger: each step of its life, in the order they usually happen.
const (
	StageReceived       = "received"        // it arrived (detail: from where)
	StageStored         = "stored"          // it is in the shop's database
	StageStatus         = "status"          // its status or contents changed (detail: from → to)
	StageUploaded       = "uploaded"        // the cloud has it
	StageUploadRejected = "upload_rejected" // the cloud refused it for good
	StageUploadHeld     = "upload_held"     // set aside unsent behind an earlier event of the order the cloud refused
	StageUploadRetry    = "upload_retry"    // an admin put refused events back in the upload queue
	StagePushed         = "pushed"          // an order-handling device acknowledged it
	StageExported       = "exported"        // the back office has it
	StageExportFailed   = "export_failed"   // the back office refused it
	StageExportRetry    = "export_retry"    // an admin offered a refused order to the back office again
)

// LedgerEntry is one step of an order's life.
type LedgerEntry struct {
	At     time.Time `json:"at"`
	Stage  string    `json:"stage"`
	Detail string    `json:"detail,omitempty"`
	Error  string    `json:"error,omitempty"`
}
